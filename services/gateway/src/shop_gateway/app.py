"""The gateway as one raw ASGI application.

Per request it does, in order: request id, routing, load shedding, body-size check, token
check, rate limit, then streams the exchange with the upstream. A FastAPI dependency chain would
cost more CPU than the whole proxy hop, so none of that machinery is on this path; request
context, metrics and security headers are applied inline instead of as wrapping middleware.
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiohttp
from prometheus_client import Counter, Histogram
from shopkit import tracing
from shopkit.auth import TokenVerifier, remote_jwks
from shopkit.discovery import Discovery
from shopkit.errors import Unauthorized
from shopkit.health import Check, run_checks
from shopkit.logs import accept_request_id, configure_logging, request_id_var
from shopkit.observability import HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS, metrics_payload
from shopkit.registry import discovery_for
from starlette.types import Receive, Scope, Send

from shop_gateway.auth import EdgeAuth, KeysUnavailable
from shop_gateway.cors import CorsPolicy
from shop_gateway.errors import send_bytes, send_json, send_problem, send_too_large
from shop_gateway.headers import IncomingRequest, read_request_headers
from shop_gateway.limits import RateLimiter, retry_after
from shop_gateway.openapi import DOCS_HTML, OpenApiAggregator
from shop_gateway.proxy import Proxy, new_upstream_session
from shop_gateway.routing import API_PREFIX, has_dot_segment, is_public, route_of, upstream_for
from shop_gateway.settings import UPSTREAMS, GatewaySettings

log = logging.getLogger("shop_gateway")

OPENAPI_PATH = "/api/v1/openapi.json"
LIVEZ_TIMEOUT_SECONDS = 2.0
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_READ_METHODS = frozenset({"GET", "HEAD"})
_OWN_ROUTES = frozenset({"/livez", "/readyz", "/metrics", "/docs"})
_SHED_HEADERS = {"Retry-After": "1"}


@dataclass
class _Resources:
    """What the lifespan opens and closes."""

    session: aiohttp.ClientSession
    registry: AsyncExitStack
    proxy: Proxy
    auth: EdgeAuth
    openapi: OpenApiAggregator
    checks: dict[str, Check]


class _Metrics:
    """The kit's RED metrics, with the upstream's name as the route label (bounded series)."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._counts: dict[tuple[str, str, int], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in _KNOWN_METHODS:
            method = "OTHER"
        key = (method, route, status)
        counter = self._counts.get(key)
        if counter is None:
            counter = HTTP_REQUESTS.labels(self._service, method, route, str(status))
            self._counts[key] = counter
        counter.inc()
        duration = self._durations.get((method, route))
        if duration is None:
            duration = HTTP_DURATION.labels(self._service, method, route)
            self._durations[(method, route)] = duration
        duration.observe(seconds)


class Gateway:
    # Set by the lifespan; the server sends no request before it has completed.
    _proxy: Proxy
    _auth: EdgeAuth

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.cors = CorsPolicy(
            settings.cors_allowed_origins,
            allow_credentials=settings.cors_allow_credentials,
            max_age=settings.cors_max_age_seconds,
        )
        self.limiter = RateLimiter(
            settings.rate_limit_per_second,
            settings.rate_limit_burst,
            max_clients=settings.rate_limit_max_clients,
        )
        self.in_flight = 0
        # None with metrics switched off: then nothing is measured and /metrics is a 404.
        measured = settings.metrics_enabled
        self._in_flight_gauge = HTTP_IN_FLIGHT.labels(settings.service_name) if measured else None
        self._max_in_flight = settings.max_in_flight
        self._max_body = settings.max_body_bytes
        self._metrics = _Metrics(settings.service_name) if measured else None
        self._resources: _Resources | None = None

    @property
    def resources(self) -> _Resources:
        if self._resources is None:
            raise RuntimeError("the gateway's lifespan has not started")
        return self._resources

    # ASGI entry point. The proxy path is kept flat on purpose: every coroutine layer is paid
    # again at each suspension, and a request suspends several times.

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._not_http(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = read_request_headers(scope["headers"])
        given = incoming.request_id
        request_id = accept_request_id(given.decode("latin-1")) if given else new_request_id()
        context = request_id_var.set(request_id)
        rid = request_id.encode()
        method: str = scope["method"]
        path: str = scope["path"]
        route = "unmatched"
        status = 500
        spans: tracing.GatewaySpans | None = None
        try:
            service = upstream_for(path)
            if service is None or has_dot_segment(path):
                route, status = await self._local(scope, send, incoming, rid)
                return
            route = service
            if tracing.enabled():
                spans = tracing.start_gateway_request(
                    method,
                    route_of(path),
                    service,
                    scope["headers"],
                    trust_client_context=self.settings.trust_client_trace_context,
                )
            cors = self.cors.response_headers(incoming.origin) if incoming.origin else []
            if method == "OPTIONS" and incoming.preflight and incoming.origin is not None:
                status = await self._preflight(send, incoming.origin, rid)
                return
            if self.in_flight >= self._max_in_flight:
                status = await self._shed(send, rid, cors)
                return
            if incoming.content_length is not None:
                status = await self._check_length(send, incoming.content_length, rid, cors)
                if status:
                    return
            self.in_flight += 1
            if self._in_flight_gauge is not None:
                self._in_flight_gauge.inc()
            try:
                client = scope.get("client")
                address = client[0] if client else "unknown"
                if is_public(method, path):
                    key = "ip:" + address
                else:
                    subject = await self._authenticate(send, incoming, address, rid, cors)
                    if isinstance(subject, int):
                        status = subject
                        return
                    key = "user:" + subject
                wait = self.limiter.acquire(key)
                if wait:
                    status = await self._rate_limited(send, wait, rid, cors)
                    return
                if spans is not None:
                    incoming.forward.extend(tracing.gateway_upstream_headers(spans, method))
                status = await self._proxy.forward(
                    scope,
                    receive,
                    send,
                    service=service,
                    incoming=incoming,
                    request_id=rid,
                    extra_headers=cors,
                    arrived=started,
                )
            finally:
                self.in_flight -= 1
                if self._in_flight_gauge is not None:
                    self._in_flight_gauge.dec()
        except Exception:
            log.exception("gateway error")
            raise
        finally:
            if self._metrics is not None:
                self._metrics.observe(method, route, status, time.perf_counter() - started)
            if spans is not None:
                tracing.end_gateway_request(spans, status)
            request_id_var.reset(context)

    async def _not_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            # No websockets through the gateway: refuse the handshake.
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        settings = self.settings
        configure_logging(settings.service_name, settings.log_level, json_lines=settings.log_json)
        tracing.start(settings.service_name)
        session = new_upstream_session(settings.upstream_connections_per_host, len(UPSTREAMS))
        registry = AsyncExitStack()
        discovery = await registry.enter_async_context(
            discovery_for(settings, settings.upstream_urls())
        )
        verifier = TokenVerifier(
            remote_jwks(session, discovery, timeout=settings.http_timeout_seconds),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway_seconds,
        )
        try:
            await verifier.refresh(force=True)
        except Exception as exc:
            # Not fatal: /readyz reports it and the first token check tries again.
            log.warning("signing keys not available yet: %s", type(exc).__name__)

        checks: dict[str, Check] = {"jwks": verifier.check}
        livez_timeout = aiohttp.ClientTimeout(total=LIVEZ_TIMEOUT_SECONDS)
        for name in settings.ready_upstreams:
            checks[name] = _livez_check(session, discovery, name, livez_timeout)

        resources = _Resources(
            session=session,
            registry=registry,
            proxy=Proxy(
                session,
                discovery,
                timeout=settings.upstream_timeout_seconds,
                connect_timeout=settings.upstream_connect_timeout_seconds,
                max_body_bytes=settings.max_body_bytes,
            ),
            auth=EdgeAuth(
                verifier,
                cache_size=settings.token_cache_size,
                cache_seconds=settings.token_cache_seconds,
            ),
            openapi=OpenApiAggregator(
                session, discovery, UPSTREAMS, ttl=settings.openapi_cache_seconds
            ),
            checks=checks,
        )
        self._resources = resources
        self._proxy = resources.proxy
        self._auth = resources.auth

    async def shutdown(self) -> None:
        if self._resources is not None:
            # First: with Consul, the gateway leaves the registry before its session closes.
            await self._resources.registry.aclose()
            await self._resources.session.close()
            self._resources = None
        await tracing.stop()

    # Answers the gateway gives itself

    async def _local(
        self, scope: Scope, send: Send, incoming: IncomingRequest, request_id: bytes
    ) -> tuple[str, int]:
        """Everything that is not proxied: own routes, the merged OpenAPI, unknown paths."""
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(API_PREFIX):
            cors = self.cors.response_headers(incoming.origin) if incoming.origin else []
            if path == OPENAPI_PATH and method in _READ_METHODS:
                body = await self.resources.openapi.document()
                await send_bytes(send, 200, body, b"application/json", request_id, extra=cors)
                return "openapi", 200
            await _not_found(send, request_id, cors)
            return "unmatched", 404
        return await self._own_route(path, method, send, request_id)

    async def _shed(self, send: Send, request_id: bytes, cors: list[tuple[bytes, bytes]]) -> int:
        await send_problem(
            send,
            503,
            "overloaded",
            "The gateway is overloaded",
            "too many requests in flight; retry shortly",
            request_id=request_id,
            headers=_SHED_HEADERS,
            extra=cors,
        )
        return 503

    async def _check_length(
        self, send: Send, length: bytes, request_id: bytes, cors: list[tuple[bytes, bytes]]
    ) -> int:
        """0 when the declared body size is acceptable, else the status already answered."""
        if not length.isdigit():
            await send_problem(
                send,
                400,
                "bad-request",
                "Bad request",
                "bad Content-Length",
                request_id=request_id,
                extra=cors,
            )
            return 400
        if int(length) > self._max_body:
            await send_too_large(send, self._max_body, request_id, cors)
            return 413
        return 0

    async def _authenticate(
        self,
        send: Send,
        incoming: IncomingRequest,
        address: str,
        request_id: bytes,
        cors: list[tuple[bytes, bytes]],
    ) -> str | int:
        """The token's subject, or the status of the refusal already answered."""
        try:
            return await self._auth.subject(incoming.authorization)
        except Unauthorized as exc:
            # Failed attempts count against the address, so guessing is throttled too.
            wait = self.limiter.acquire("ip:" + address)
            if wait:
                return await self._rate_limited(send, wait, request_id, cors)
            await send_problem(
                send,
                401,
                Unauthorized.slug,
                Unauthorized.title,
                exc.detail,
                request_id=request_id,
                headers=exc.headers,
                extra=cors,
            )
            return 401
        except KeysUnavailable:
            await send_problem(
                send,
                503,
                "auth-unavailable",
                "Tokens cannot be checked right now",
                "the signing keys are not available",
                request_id=request_id,
                headers={"Retry-After": "2"},
                extra=cors,
            )
            return 503

    async def _rate_limited(
        self, send: Send, wait: float, request_id: bytes, cors: list[tuple[bytes, bytes]]
    ) -> int:
        await send_problem(
            send,
            429,
            "rate-limited",
            "Too many requests",
            "slow down and retry after the indicated time",
            request_id=request_id,
            headers={"Retry-After": retry_after(wait)},
            extra=cors,
        )
        return 429

    async def _preflight(self, send: Send, origin: bytes, request_id: bytes) -> int:
        if not self.cors.enabled or not self.cors.allows(origin):
            await send_problem(
                send, 403, "cors-origin-refused", "Origin not allowed", request_id=request_id
            )
            return 403
        await send_bytes(
            send, 204, b"", b"text/plain", request_id, extra=self.cors.preflight_headers(origin)
        )
        return 204

    async def _own_route(
        self, path: str, method: str, send: Send, request_id: bytes
    ) -> tuple[str, int]:
        if path not in _OWN_ROUTES or (path == "/metrics" and self._metrics is None):
            await _not_found(send, request_id, [])
            return "unmatched", 404
        if method not in _READ_METHODS:
            await send_problem(
                send,
                405,
                "method-not-allowed",
                "Method not allowed",
                request_id=request_id,
                headers={"Allow": "GET, HEAD"},
            )
            return path, 405
        if path == "/livez":
            await send_json(send, 200, {"status": "ok"}, request_id)
            return path, 200
        if path == "/readyz":
            return path, await self._readyz(send, request_id)
        if path == "/metrics":
            payload, content_type = metrics_payload()
            await send_bytes(send, 200, payload, content_type.encode(), request_id)
            return path, 200
        await send_bytes(send, 200, DOCS_HTML, b"text/html; charset=utf-8", request_id)
        return path, 200

    async def _readyz(self, send: Send, request_id: bytes) -> int:
        results = await run_checks(self.resources.checks)
        failing = sorted(name for name, result in results.items() if result != "ok")
        if failing:
            await send_problem(
                send,
                503,
                "not-ready",
                "Not ready",
                f"failing: {', '.join(failing)}",
                request_id=request_id,
                headers={"Retry-After": "1"},
                fields={"checks": results},
            )
            return 503
        await send_json(send, 200, {"status": "ok", "checks": results}, request_id)
        return 200


async def _not_found(send: Send, request_id: bytes, cors: list[tuple[bytes, bytes]]) -> None:
    await send_problem(
        send, 404, "not-found", "Not found", "no such route", request_id=request_id, extra=cors
    )


def _livez_check(
    session: aiohttp.ClientSession,
    discovery: Discovery,
    service: str,
    timeout: aiohttp.ClientTimeout,
) -> Check:
    async def check() -> None:
        base = await discovery.resolve(service)
        async with session.get(base + "/livez", timeout=timeout) as resp:
            await resp.read()
            if resp.status != 200:
                raise LookupError(f"/livez answered {resp.status}")

    return check


def new_request_id() -> str:
    """A fresh id shaped like uuid4().hex, without uuid4's urandom syscall per request: request
    ids correlate logs, they protect nothing."""
    return f"{random.getrandbits(128):032x}"


def create_app(settings: GatewaySettings | None = None) -> Gateway:
    """The gateway ASGI application; resources are opened by its lifespan."""
    return Gateway(settings or GatewaySettings())
