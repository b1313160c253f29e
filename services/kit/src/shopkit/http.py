"""Outbound HTTP: one aiohttp session per process, a timeout on every call, typed answers.

Anything that is not a usable answer from the peer (refused connection, timeout, 5xx, a body
that is not the JSON we expect) becomes :class:`PeerUnavailable`, which renders as 503 with
Retry-After: a broken peer is a dependency failure, never a 500 of ours.

Within a request that carries a deadline (:mod:`shopkit.deadline`) a call waits no longer than
the time left, tells the peer how long that is, and is not sent once no time is left
(:class:`DeadlineExceeded`, a kind of :class:`PeerUnavailable`).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from shopkit import deadline as deadlines
from shopkit import tracing
from shopkit.discovery import Discovery, UnknownService
from shopkit.errors import ServiceUnavailable
from shopkit.logs import request_id_var
from shopkit.observability import BREAKER_STATE, PEER_CALLS, PEER_DURATION
from shopkit.resilience import PeerGuard

INTERNAL_TOKEN_HEADER = "X-Internal-Token"  # noqa: S105 - a header name, not a secret

M = TypeVar("M", bound=BaseModel)


class PeerUnavailable(ServiceUnavailable):
    slug = "dependency-unavailable"
    title = "A service this request depends on is unavailable"

    def __init__(self, peer: str, reason: str) -> None:
        super().__init__(f"{peer} is unavailable: {reason}", retry_after=2)
        self.peer = peer
        self.reason = reason


class DeadlineExceeded(PeerUnavailable):
    """The request's deadline left no time for a call (it was not sent), or ended it (reason
    "timed out", as for any timeout: the peer may have acted). Still a dependency failure, so
    every caller's handling of :class:`PeerUnavailable` applies; 503 rather than 504 because
    the service answers it itself, knowing what it did, and 504 is the gateway's "no answer,
    outcome unknown"."""

    slug = "deadline-exceeded"
    title = "The request ran out of time"

    def __init__(self, peer: str, reason: str = "no time left in the request's budget") -> None:
        super().__init__(peer, reason)


@dataclass(frozen=True)
class PeerResponse:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    def model(self, model: type[M], peer: str) -> M:
        try:
            return model.model_validate(self.body)
        except ValidationError as exc:
            raise PeerUnavailable(peer, f"malformed answer ({exc.error_count()} errors)") from exc


def new_client_session(*, limit: int = 100) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=30)
    return aiohttp.ClientSession(connector=connector, raise_for_status=False, trust_env=False)


class ServiceClient:
    """Base of every typed client in a service's ``clients/`` package."""

    peer: str = "peer"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        discovery: Discovery,
        *,
        timeout: float,
        internal_token: str,
        guard: PeerGuard | None = None,
    ) -> None:
        self._session = session
        self._discovery = discovery
        self._timeout = timeout
        self._internal_token = internal_token
        self._guard = guard

    def failing_fast(self) -> bool:
        """Whether the peer's breaker is open, so a call now would fail at once. A caller may
        refuse work that needs the peer before doing any of it; that counts as a call
        short-circuited by the breaker."""
        guard = self._guard
        if guard is None or not guard.breaker.refusing():
            return False
        PEER_CALLS.labels(guard.service, self.peer, "short-circuited").inc()
        return True

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> PeerResponse:
        """One call through the peer's guard. ``idempotent`` (default: GET and HEAD) allows
        retries; a write is idempotent when a key or the resource id makes a repeat harmless."""
        guard = self._guard
        bound = deadlines.bounding(method)
        if bound is not None and bound.remaining() < deadlines.MIN_CALL_SECONDS:
            if guard is not None:
                PEER_CALLS.labels(guard.service, self.peer, "deadline-exceeded").inc()
            raise DeadlineExceeded(self.peer)
        call: dict[str, Any] = {
            "json_body": json_body,
            "params": params,
            "headers": headers,
            "timeout": timeout,
            "bound": bound,
        }
        if guard is None:
            return await self._send(method, path, **call)
        if not guard.breaker.allow():
            PEER_CALLS.labels(guard.service, self.peer, "short-circuited").inc()
            raise PeerUnavailable(self.peer, "circuit open")
        if not guard.try_enter():
            guard.breaker.abandon()
            PEER_CALLS.labels(guard.service, self.peer, "rejected").inc()
            raise PeerUnavailable(self.peer, "too many calls in flight")
        retryable = method in {"GET", "HEAD"} if idempotent is None else idempotent
        guard.budget.earn()
        try:
            attempt = 0
            while True:
                started = time.perf_counter()
                try:
                    response = await self._send(method, path, **call)
                except BaseException as exc:
                    if not isinstance(exc, PeerUnavailable) or isinstance(exc, DeadlineExceeded):
                        # Cancelled, or cut short by our own deadline: no verdict on the peer.
                        guard.breaker.abandon()
                        if isinstance(exc, DeadlineExceeded):
                            sent = exc.reason == "timed out"
                            outcome = "deadline-cut" if sent else "deadline-exceeded"
                            PEER_CALLS.labels(guard.service, self.peer, outcome).inc()
                        raise
                    guard.breaker.record(success=False)
                    PEER_CALLS.labels(guard.service, self.peer, "failed").inc()
                    # A timeout already spent the caller's budget; fast failures are cheap.
                    # A retry must still fit in the request's deadline, after its pause.
                    pause = guard.backoff(attempt)
                    fits = bound is None or bound.remaining() - pause >= deadlines.MIN_CALL_SECONDS
                    if (
                        retryable
                        and exc.reason != "timed out"
                        and attempt < guard.policy.retries
                        and fits
                        and guard.budget.spend()
                        and guard.breaker.allow()
                    ):
                        try:
                            await asyncio.sleep(pause)
                        except BaseException:
                            guard.breaker.abandon()
                            raise
                        attempt += 1
                        continue
                    raise
                finally:
                    PEER_DURATION.labels(guard.service, self.peer).observe(
                        time.perf_counter() - started
                    )
                    BREAKER_STATE.labels(guard.service, self.peer).set(guard.breaker.state)
                guard.breaker.record(success=True)
                PEER_CALLS.labels(guard.service, self.peer, "ok").inc()
                return response
        finally:
            guard.leave()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
        timeout: float | None,
        bound: deadlines.Deadline | None = None,
    ) -> PeerResponse:
        try:
            base = await self._discovery.resolve(self.peer)
        except UnknownService as exc:
            raise PeerUnavailable(self.peer, "no instance known") from exc
        sent_headers = {INTERNAL_TOKEN_HEADER: self._internal_token}
        request_id = request_id_var.get()
        if request_id:
            sent_headers["X-Request-ID"] = request_id
        wait = timeout or self._timeout
        cut = False
        if bound is not None:
            left = bound.remaining()
            if left < deadlines.MIN_CALL_SECONDS:
                raise DeadlineExceeded(self.peer)
            if left < wait:
                wait, cut = left, True
            sent_headers[deadlines.BUDGET_HEADER] = deadlines.header_value(wait)
        sent_headers.update(headers or {})
        budget = aiohttp.ClientTimeout(total=wait)
        # An instance that refuses the connection never saw the request, whatever its method:
        # the next instance gets it (a service may run several, see shopkit.discovery).
        others = self._discovery.instance_count(self.peer) - 1
        tried: list[str] = []
        try:
            while True:
                try:
                    # One span per attempt (another instance, a retry): each carries its own.
                    with tracing.client_span(method, self.peer, base, path) as span:
                        async with self._session.request(
                            method,
                            base + path,
                            json=json_body,
                            params=params,
                            headers=tracing.inject(sent_headers),
                            timeout=budget,
                        ) as resp:
                            raw = await resp.read()
                            status = resp.status
                            resp_headers = dict(resp.headers.items())
                        tracing.client_response(span, status)
                    break
                except aiohttp.ClientConnectorError:
                    self._discovery.unreachable(self.peer, base)
                    tried.append(base)
                    if others <= 0:
                        raise
                    others -= 1
                    base = await self._discovery.resolve(self.peer, avoid=tried)
        except TimeoutError as exc:
            if cut:  # the caller's deadline, not the instance, ended it
                raise DeadlineExceeded(self.peer, "timed out") from exc
            self._discovery.answered(self.peer, base, ok=False)
            raise PeerUnavailable(self.peer, "timed out") from exc
        except aiohttp.ClientError as exc:
            if not isinstance(exc, aiohttp.ClientConnectorError):  # that one is unreachable()
                self._discovery.answered(self.peer, base, ok=False)
            raise PeerUnavailable(self.peer, type(exc).__name__) from exc
        self._discovery.answered(self.peer, base, ok=status < 500 or status == 503)
        if status >= 500:
            raise PeerUnavailable(self.peer, f"answered {status}")
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise PeerUnavailable(self.peer, "answered a body that is not JSON") from exc
        return PeerResponse(status, body, resp_headers)
