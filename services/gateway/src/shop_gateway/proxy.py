"""The hot path: forward one request to an upstream and stream the answer back.

Bodies are passed through as bytes in both directions, never parsed. A request body that
arrives in one ASGI message (the usual small JSON) is sent as-is; a longer one is streamed and
counted on the way so a chunked upload cannot exceed the limit. The answer is relayed chunk by
chunk as the upstream produces it, so memory per request does not grow with the body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from shopkit.deadline import BUDGET_HEADER, MIN_CALL_SECONDS, header_value
from shopkit.discovery import Discovery, UnknownService
from starlette.types import Message, Receive, Scope, Send
from yarl import URL

from shop_gateway.errors import send_problem, send_too_large
from shop_gateway.headers import IncomingRequest, response_headers

log = logging.getLogger("shop_gateway.proxy")

UPSTREAM_RETRY_AFTER = {"Retry-After": "2"}
# Methods whose repeat has the effect of one request (RFC 9110 9.2.2).
REPEATABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_LOG_EVERY_SECONDS = 5.0


class ClientGone(Exception):
    """The client disconnected while its body was being read."""


class BodyTooLarge(Exception):
    """The streamed request body went past the limit."""


class _Upload:
    """What happened to a streamed request body (aiohttp wraps errors raised inside it)."""

    __slots__ = ("client_gone", "done", "too_large")

    def __init__(self) -> None:
        self.client_gone = False
        self.too_large = False
        self.done = False


class _Throttled:
    """At most one log line per key every few seconds: an outage must not flood the logs."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) < _LOG_EVERY_SECONDS:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        log.warning(message + " (%d similar suppressed)", *args, suppressed)


def _client_left(watcher: asyncio.Future[Message]) -> bool:
    if not watcher.done() or watcher.cancelled() or watcher.exception() is not None:
        return False
    return bool(watcher.result()["type"] == "http.disconnect")


def new_upstream_session(connections_per_host: int, upstreams: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=connections_per_host * upstreams,
        limit_per_host=connections_per_host,
        ttl_dns_cache=30,
        keepalive_timeout=30,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # One session serves every user: a cookie one upstream sets must never reach another user.
        cookie_jar=aiohttp.DummyCookieJar(),
        # Relay exactly what the client sent and the upstream answered.
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        raise_for_status=False,
        trust_env=False,
    )


class Proxy:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        discovery: Discovery,
        *,
        timeout: float,
        connect_timeout: float,
        max_body_bytes: int,
    ) -> None:
        self._session = session
        self._discovery = discovery
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=min(connect_timeout, timeout)
        )
        self._budget = timeout
        self._max_body = max_body_bytes
        self._log = _Throttled()

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        service: str,
        incoming: IncomingRequest,
        request_id: bytes,
        extra_headers: list[tuple[bytes, bytes]],
        arrived: float | None = None,
    ) -> int:
        """Relay the request; returns the status the client got (0 if it went away).

        The upstream is told in ``X-Request-Budget-Ms`` (:mod:`shopkit.deadline`) how long it
        has: the upstream timeout less what the gateway already spent since the request
        ``arrived`` (its ``time.perf_counter()``), such as a token check that fetched keys. The
        gateway itself waits the whole upstream timeout, so the service always gives up first
        and can still answer for itself."""
        budget = self._budget
        if arrived is not None:
            budget -= time.perf_counter() - arrived
            if budget < MIN_CALL_SECONDS:
                return await self._out_of_time(send, service, request_id, extra_headers)
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        target = raw_path.decode("latin-1")
        query = scope["query_string"]
        if query:
            target += "?" + query.decode("latin-1")
        headers = incoming.forward
        headers.append(("X-Request-ID", request_id.decode("latin-1")))
        headers.append((BUDGET_HEADER, header_value(budget)))
        client = scope.get("client")
        if client:
            headers.append(("X-Forwarded-For", client[0]))

        upload = _Upload()
        data: bytes | AsyncIterator[bytes] | None = None
        if incoming.chunked or (incoming.content_length not in (None, b"0")):
            first = await receive()
            if first["type"] == "http.disconnect":
                return 0
            body: bytes = first.get("body", b"")
            if len(body) > self._max_body:
                return await self._too_large(send, request_id, extra_headers)
            if first.get("more_body", False):
                data = self._stream_body(body, receive, upload)
            else:
                data = body
                upload.done = True
        else:
            upload.done = True

        started = False
        resp: aiohttp.ClientResponse | None = None
        try:
            # Awaited directly rather than as a context manager: one coroutine layer less to
            # resume at each suspension; the finally clause releases it the same way.
            resp = await self._open(service, scope["method"], target, headers, data)
            content = resp.content
            chunk = await content.readany()
            eof = content.at_eof()
            status = resp.status
            out = response_headers(resp.raw_headers, request_id)
            if extra_headers:
                out.extend(extra_headers)
            started = True
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": chunk, "more_body": not eof})
            if not eof:
                await self._relay_rest(content, receive, send, upload)
            return status
        except BodyTooLarge:
            return await self._too_large(send, request_id, extra_headers)
        except (aiohttp.ClientError, TimeoutError, OSError, UnknownService) as exc:
            if upload.client_gone:
                return 0
            if upload.too_large:
                return await self._too_large(send, request_id, extra_headers)
            if started:
                # Headers are out: the only honest signal left is closing the connection.
                self._log.warning(
                    f"broken:{service}", "upstream %s broke off an answer: %r", service, exc
                )
                return 0
            return await self._upstream_failed(send, service, exc, request_id, extra_headers)
        finally:
            if resp is not None:
                # Back to the pool when fully read; closed otherwise.
                resp.release()

    async def _open(
        self,
        service: str,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        data: bytes | AsyncIterator[bytes] | None,
    ) -> aiohttp.ClientResponse:
        """Send to one instance of ``service``, moving on to the next one when the request
        surely never reached it: no connection could be made (the instance is stopped,
        restarting or draining after SIGTERM), or, for a request that may be repeated, a kept
        connection was closed under it before any answer (a shutdown racing the pool)."""
        repeatable = not isinstance(data, AsyncIterator) and (
            method in REPEATABLE_METHODS
            or any(name.lower() == "idempotency-key" for name, _ in headers)
        )
        instances = max(1, self._discovery.instance_count(service))
        tried: list[str] = []
        while True:
            base = await self._discovery.resolve(service, avoid=tried)
            try:
                resp = await self._session.request(
                    method,
                    URL(base + target, encoded=True),
                    headers=headers,
                    data=data,
                    timeout=self._timeout,
                    allow_redirects=False,
                )
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
                self._discovery.unreachable(service, base)
                if len(tried) + 1 >= instances:
                    raise
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                self._discovery.answered(service, base, ok=False)
                # One more try than there are instances: a fresh connection to the same one.
                if not repeatable or len(tried) + 1 > instances:
                    raise
            except TimeoutError:
                self._discovery.answered(service, base, ok=False)
                raise
            else:
                # 503 is an upstream's deliberate answer (a dependency down, load shed), not a
                # sign of a broken instance.
                self._discovery.answered(service, base, ok=resp.status < 500 or resp.status == 503)
                return resp
            tried.append(base)

    async def _relay_rest(
        self, content: aiohttp.StreamReader, receive: Receive, send: Send, upload: _Upload
    ) -> None:
        # Long answers watch for the client leaving, so an abandoned download stops early.
        watcher: asyncio.Future[Message] | None = None
        if upload.done:
            watcher = asyncio.ensure_future(receive())
        try:
            while True:
                chunk = await content.readany()
                if watcher is not None and _client_left(watcher):
                    return
                if not chunk:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                eof = content.at_eof()
                await send({"type": "http.response.body", "body": chunk, "more_body": not eof})
                if eof:
                    return
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _stream_body(
        self, first: bytes, receive: Receive, upload: _Upload
    ) -> AsyncIterator[bytes]:
        total = len(first)
        if first:
            yield first
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                upload.client_gone = True
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            total += len(chunk)
            if total > self._max_body:
                upload.too_large = True
                raise BodyTooLarge
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                upload.done = True
                return

    async def _out_of_time(
        self, send: Send, service: str, request_id: bytes, extra: list[tuple[bytes, bytes]]
    ) -> int:
        await send_problem(
            send,
            503,
            "deadline-exceeded",
            "The request ran out of time",
            f"no time was left to ask {service}",
            request_id=request_id,
            headers=UPSTREAM_RETRY_AFTER,
            extra=extra,
        )
        return 503

    async def _too_large(
        self, send: Send, request_id: bytes, extra: list[tuple[bytes, bytes]]
    ) -> int:
        await send_too_large(send, self._max_body, request_id, extra)
        return 413

    async def _upstream_failed(
        self,
        send: Send,
        service: str,
        exc: BaseException,
        request_id: bytes,
        extra: list[tuple[bytes, bytes]],
    ) -> int:
        if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ConnectionTimeoutError):
            self._log.warning(f"timeout:{service}", "upstream %s timed out", service)
            await send_problem(
                send,
                504,
                "upstream-timeout",
                "The service did not answer in time",
                f"{service} did not answer in time",
                request_id=request_id,
                headers=UPSTREAM_RETRY_AFTER,
                extra=extra,
            )
            return 504
        self._log.warning(
            f"unreachable:{service}", "upstream %s unreachable: %s", service, type(exc).__name__
        )
        await send_problem(
            send,
            503,
            "upstream-unavailable",
            "The service is unavailable",
            f"{service} is unavailable",
            request_id=request_id,
            headers=UPSTREAM_RETRY_AFTER,
            extra=extra,
        )
        return 503
