"""Outbound HTTP: one aiohttp session per process, a timeout on every call, typed answers.

Anything that is not a usable answer from the peer (refused connection, timeout, 5xx, a body
that is not the JSON we expect) becomes :class:`PeerUnavailable`, which renders as 503 with
Retry-After: a broken peer is a dependency failure, never a 500 of ours.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from shopkit.discovery import Discovery
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
        call: dict[str, Any] = {
            "json_body": json_body,
            "params": params,
            "headers": headers,
            "timeout": timeout,
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
                    if not isinstance(exc, PeerUnavailable):
                        guard.breaker.abandon()  # cancelled: no verdict on the peer
                        raise
                    guard.breaker.record(success=False)
                    PEER_CALLS.labels(guard.service, self.peer, "failed").inc()
                    # A timeout already spent the caller's budget; fast failures are cheap.
                    if (
                        retryable
                        and exc.reason != "timed out"
                        and attempt < guard.policy.retries
                        and guard.budget.spend()
                        and guard.breaker.allow()
                    ):
                        try:
                            await guard.pause(attempt)
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
    ) -> PeerResponse:
        base = await self._discovery.resolve(self.peer)
        sent_headers = {INTERNAL_TOKEN_HEADER: self._internal_token}
        request_id = request_id_var.get()
        if request_id:
            sent_headers["X-Request-ID"] = request_id
        sent_headers.update(headers or {})
        budget = aiohttp.ClientTimeout(total=timeout or self._timeout)
        try:
            async with self._session.request(
                method,
                base + path,
                json=json_body,
                params=params,
                headers=sent_headers,
                timeout=budget,
            ) as resp:
                raw = await resp.read()
                status = resp.status
                resp_headers = dict(resp.headers.items())
        except TimeoutError as exc:
            raise PeerUnavailable(self.peer, "timed out") from exc
        except aiohttp.ClientError as exc:
            raise PeerUnavailable(self.peer, type(exc).__name__) from exc
        if status >= 500:
            raise PeerUnavailable(self.peer, f"answered {status}")
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise PeerUnavailable(self.peer, "answered a body that is not JSON") from exc
        return PeerResponse(status, body, resp_headers)
