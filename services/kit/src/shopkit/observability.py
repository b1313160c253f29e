"""Request context (request id, deadline, access log) and RED metrics, as one cheap ASGI
middleware.

Metric names are declared here once; route templates (never raw paths) are the labels so an
attacker walking random URLs cannot explode the series count.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopkit import deadline as deadlines
from shopkit.errors import DomainError, NotFound, PayloadTooLarge, Unprocessable
from shopkit.logs import accept_request_id, request_id_var

log = logging.getLogger("shopkit.access")

HTTP_REQUESTS = Counter(
    "shop_http_requests",
    "HTTP requests served, by route template and status code.",
    ["service", "method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "shop_http_request_duration_seconds",
    "Time to serve an HTTP request, by route template.",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PEER_CALLS = Counter(
    "shop_peer_calls",
    "Calls to another service, by outcome (ok, failed, short-circuited, rejected, "
    "deadline-exceeded: not sent for lack of time, deadline-cut: ended by the deadline).",
    ["service", "peer", "outcome"],
)
PEER_DURATION = Histogram(
    "shop_peer_call_duration_seconds",
    "Time of one attempt of a call to another service.",
    ["service", "peer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BREAKER_STATE = Gauge(
    "shop_peer_breaker_state",
    "Circuit breaker of a peer: 0 closed, 1 open, 2 half-open.",
    ["service", "peer"],
    multiprocess_mode="max",
)
DISCOVERY_INSTANCES = Gauge(
    "shop_discovery_instances",
    "Instances of a peer this service currently spreads its calls over (shopkit.discovery).",
    ["service", "peer"],
    multiprocess_mode="max",
)
DISCOVERY_REFRESH_FAILURES = Counter(
    "shop_discovery_refresh_failures",
    "Refreshes of a peer's instances that failed (DNS or Consul unreachable); the last known "
    "instances stay in use meanwhile.",
    ["service", "peer"],
)
PEER_OUTCOMES = (
    "ok",
    "failed",
    "short-circuited",
    "rejected",
    "deadline-exceeded",
    "deadline-cut",
)


HTTP_IN_FLIGHT = Gauge(
    "shop_http_in_flight_requests",
    "Requests being served right now.",
    ["service"],
    multiprocess_mode="livesum",
)


def prime_peer(service: str, peer: str) -> None:
    """Series of a peer at 0 (and its breaker closed) from the moment its client exists, so
    error ratios and breaker panels read 0 on a quiet service instead of no data."""
    for outcome in PEER_OUTCOMES:
        PEER_CALLS.labels(service, peer, outcome)
    PEER_DURATION.labels(service, peer)
    BREAKER_STATE.labels(service, peer).set(0)


def metrics_payload() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    """Sets the request id (the client's if well formed), echoes it, logs and measures.

    A caller's ``X-Request-Budget-Ms`` becomes the request's deadline (:mod:`shopkit.deadline`);
    without one, or with a malformed one, the request has none. With ``metrics`` off (the
    ``metrics_enabled`` setting) it records no metrics: one middleware, so turning metrics on
    adds no ASGI layer of its own."""

    def __init__(self, app: ASGIApp, *, service: str, metrics: bool = True) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        budget = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if given is None:
                    given = value.decode("latin-1")
            elif name == deadlines.BUDGET_HEADER_RAW and budget is None:
                budget = value
        request_id = accept_request_id(given)
        token = request_id_var.set(request_id)
        deadline_token = deadlines.enter(deadlines.from_header(budget))
        started = time.perf_counter()
        status = 500
        encoded_id = request_id.encode()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", encoded_id))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"]
            if self.metrics:
                HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
                HTTP_DURATION.labels(self.service, method, route).observe(elapsed)
            if route not in {"/livez", "/readyz", "/metrics"}:
                log.info(
                    "%s %s %d",
                    method,
                    scope["path"],
                    status,
                    extra={"fields": {"status": status, "route": route, "ms": elapsed * 1000}},
                )
            deadlines.leave(deadline_token)
            request_id_var.reset(token)


class RequestGuardMiddleware:
    """Cheap checks before any route runs.

    Bodies over ``max_bytes`` are refused at once when Content-Length says so, otherwise as soon
    as the streamed body passes the limit. NUL characters in the path or query are refused too:
    PostgreSQL cannot store them in text, and no legitimate id or search term contains one.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal: DomainError | None = None
        if "\x00" in scope["path"]:
            refusal = NotFound("no such resource")
        elif b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]:
            refusal = Unprocessable("the query string contains a NUL character")
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    refusal = PayloadTooLarge(f"the limit is {self.max_bytes} bytes")
                break
        if refusal is not None:
            await refusal.to_response()(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(f"the limit is {self.max_bytes} bytes")
            return message

        await self.app(scope, counting_receive, send)
