"""Traces: the OpenTelemetry SDK, exported over OTLP/HTTP, with W3C trace context between
processes (HTTP headers, and NATS message headers through the outbox).

Tracing is a process-wide switch, turned on by the lifespan (:func:`start`) only when the
standard variables ask for it: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` set, ``OTEL_SDK_DISABLED`` not true. Everything else is the
SDK's own reading of the standard variables: sampler (``OTEL_TRACES_SAMPLER``, default
``parentbased_always_on``), batching (``OTEL_BSP_*``), resource (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``), propagators (``OTEL_PROPAGATORS``). While it is off the SDK is
not even imported and every hook below is one test of a module global, so switching tracing off
costs nothing measurable (PERFORMANCE.md P4).

Span names and attribute keys are declared here once. HTTP and messaging spans follow the
OpenTelemetry semantic conventions (server ``{method} {route}``, client ``{method}``, messaging
``{operation} {subject}``); attributes of our own are ``shop.*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from contextvars import Token
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopkit.observability import route_template

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("shopkit.tracing")

# ----------------------------------------------------------------- names, declared once

TRACER_NAME = "shopkit"
SERVICE_NAMESPACE = "sweetslice"

# OpenTelemetry semantic conventions (HTTP, URL, server, error, messaging).
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
URL_FULL = "url.full"
URL_SCHEME = "url.scheme"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_CONSUMER_GROUP_NAME = "messaging.consumer.group.name"
# Ours.
SHOP_PEER = "shop.peer"  # the service a client span calls
SHOP_UPSTREAM = "shop.gateway.upstream"  # the service the gateway routed a request to
SHOP_EVENT_DELIVERY = "shop.event.delivery"  # which delivery of an event a consumer span handles
SHOP_CLIENT_TRACEPARENT = "shop.gateway.client_traceparent"  # untrusted, kept for correlation

MESSAGING_SYSTEM_NATS = "nats"
OP_CREATE = "create"
OP_PROCESS = "process"

# Probes and scrapes every few seconds would bury the traces that matter.
UNTRACED_PATHS = frozenset({"/livez", "/readyz", "/metrics"})


def server_span_name(method: str, route: str | None) -> str:
    return f"{method} {route}" if route else method


def client_span_name(method: str) -> str:
    # No low-cardinality URL template is known for a typed client's path: the method alone.
    return method


def messaging_span_name(operation: str, subject: str) -> str:
    return f"{operation} {subject}"


# ---------------------------------------------------------------------- the switch


@dataclass(frozen=True)
class _Tracing:
    provider: TracerProvider
    tracer: trace.Tracer
    propagator: TextMapPropagator
    # Header names the propagator reads, lower-case bytes as ASGI gives them.
    fields: frozenset[bytes]


_active: _Tracing | None = None
# Lifespans that started tracing and have not stopped it (tests run several apps in a process).
_users = 0


def enabled_by_environment(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def start(service_name: str, *, exporter: SpanExporter | None = None) -> bool:
    """Turn tracing on for this process when the environment asks for it; True if it is on.
    Each call that returned True is matched by one :func:`stop`.

    ``exporter`` (tests) replaces the OTLP exporter and exports each span as it ends. The
    environment still names the service (``OTEL_SERVICE_NAME`` wins over ``service_name``)."""
    global _active, _users  # noqa: PLW0603 - one provider per process, like the SDK's global one
    if _active is not None:
        _users += 1
        return True
    if exporter is None and not enabled_by_environment():
        return False
    # Imported here: a process without tracing never loads the SDK or the exporter.
    from opentelemetry.propagate import get_global_textmap  # noqa: PLC0415
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        SimpleSpanProcessor,
    )

    attributes: dict[str, str] = {"service.namespace": SERVICE_NAMESPACE}
    if not os.environ.get("OTEL_SERVICE_NAME", "").strip():
        attributes["service.name"] = service_name
    # Without an explicit sampler the SDK reads OTEL_TRACES_SAMPLER(_ARG).
    provider = TracerProvider(resource=Resource.create(attributes))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    propagator = get_global_textmap()
    _active = _Tracing(
        provider=provider,
        tracer=provider.get_tracer(TRACER_NAME),
        propagator=propagator,
        fields=frozenset(f.lower().encode("latin-1") for f in propagator.fields),
    )
    _users = 1
    return True


async def stop() -> None:
    """Flush what is buffered and, once every lifespan that started tracing is done, turn it
    off."""
    global _active, _users  # noqa: PLW0603 - see start()
    if _active is None:
        return
    _users -= 1
    if _users > 0:
        return
    state, _active = _active, None
    # Exporting the last batch blocks on the network: not on the event loop.
    await asyncio.to_thread(state.provider.shutdown)


def enabled() -> bool:
    return _active is not None


_NO_TRACER = trace.NoOpTracer()


def tracer() -> trace.Tracer:
    """The tracer for spans of a service's own (name them here); a no-op one while off. The
    SDK's provider is this module's, not the global one, so a process can start and stop
    tracing more than once (tests do)."""
    state = _active
    return state.tracer if state is not None else _NO_TRACER


# ------------------------------------------------------------------- propagation


def inject(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus the trace context of the current span (the same dict when off)."""
    state = _active
    if state is None:
        return headers
    carried = dict(headers)
    state.propagator.inject(carried)
    return carried


def capture() -> str | None:
    """The current trace context as text, for work that continues later elsewhere (an outbox
    row). None when tracing is off or no span is current."""
    state = _active
    if state is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    state.propagator.inject(carrier)
    return json.dumps(carrier, separators=(",", ":")) if carrier else None


def captured_headers(text: str | None) -> dict[str, str]:
    """Message headers from :func:`capture`'s text. Only string values are kept; the caller's
    own headers are applied after these, so none of them can be overridden."""
    if not text:
        return {}
    try:
        carrier = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(carrier, dict):
        return {}
    return {k: v for k, v in carrier.items() if isinstance(k, str) and isinstance(v, str)}


def _asgi_carrier(state: _Tracing, headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    fields = state.fields
    return {
        name.decode("latin-1"): value.decode("latin-1") for name, value in headers if name in fields
    }


# ----------------------------------------------------------------------- servers


class TracingMiddleware:
    """One SERVER span per request, child of the caller's context, named by the route
    template once routing has found it (never by the raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = _active
        if state is None or scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        parent = state.propagator.extract(_asgi_carrier(state, scope["headers"]))
        span = state.tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={HTTP_REQUEST_METHOD: method, URL_SCHEME: scope.get("scheme", "http")},
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            span.record_exception(exc)
            status = status or 500
            raise
        finally:
            route = route_template(scope)
            if route != "unmatched":
                span.set_attribute(HTTP_ROUTE, route)
                span.update_name(server_span_name(method, route))
            end_server_span(span, status)
            otel_context.detach(token)


def end_server_span(span: Span, status: int) -> None:
    if status:
        span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
    # A server's 4xx is the client's mistake, not a failure of the service.
    if status >= 500 or status == 0:
        span.set_attribute(ERROR_TYPE, str(status) if status else "no response")
        span.set_status(Status(StatusCode.ERROR))
    span.end()


@dataclass
class GatewaySpans:
    """The gateway's SERVER span for one request, and its CLIENT span for the upstream call."""

    server: Span
    token: Token[otel_context.Context]
    upstream: str
    client: Span | None = None


def start_gateway_request(
    method: str,
    route: str,
    upstream: str,
    client_headers: Iterable[tuple[bytes, bytes]],
    *,
    trust_client_context: bool,
) -> GatewaySpans | None:
    """The gateway starts the trace; None when tracing is off.

    A client's own trace context is not trusted unless configured: honouring it would let any
    client choose trace ids (colliding with other traces) and turn sampling on for all its
    requests (flooding the backend), or off. It is kept as a link instead, which the sampler
    does not follow, so a client's trace can still be correlated with ours."""
    state = _active
    if state is None:
        return None
    attributes: dict[str, Any] = {
        HTTP_REQUEST_METHOD: method,
        HTTP_ROUTE: route,
        SHOP_UPSTREAM: upstream,
    }
    parent = otel_context.Context()
    links: list[Link] = []
    given = _asgi_carrier(state, client_headers)
    if given:
        theirs = state.propagator.extract(given)
        if trust_client_context:
            parent = theirs
        else:
            client = trace.get_current_span(theirs).get_span_context()
            if client.is_valid:
                links.append(Link(client))
    span = state.tracer.start_span(
        server_span_name(method, route),
        context=parent,
        kind=SpanKind.SERVER,
        attributes=attributes,
        links=links,
    )
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    return GatewaySpans(server=span, token=token, upstream=upstream)


def gateway_upstream_headers(spans: GatewaySpans, method: str) -> list[tuple[str, str]]:
    """Start the CLIENT span of the upstream call; returns the headers that carry it."""
    state = _active
    if state is None:
        return []
    spans.client = state.tracer.start_span(
        client_span_name(method),
        kind=SpanKind.CLIENT,
        attributes={HTTP_REQUEST_METHOD: method, SHOP_PEER: spans.upstream},
    )
    carrier: dict[str, str] = {}
    state.propagator.inject(carrier, context=trace.set_span_in_context(spans.client))
    return list(carrier.items())


def end_gateway_request(spans: GatewaySpans, status: int) -> None:
    if spans.client is not None:
        _end_client_span(spans.client, status)
    end_server_span(spans.server, status)
    otel_context.detach(spans.token)


# ----------------------------------------------------------------------- clients


@lru_cache(maxsize=256)
def _endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "", parts.port or default


_OFF: AbstractContextManager[None] = contextlib.nullcontext()


def client_span(
    method: str, peer: str, base: str, path: str
) -> AbstractContextManager[Span | None]:
    """A CLIENT span around one HTTP attempt to a peer; a shared no-op when tracing is off.
    Inside it, :func:`inject` adds the span's context to the request's headers."""
    state = _active
    if state is None:
        return _OFF
    address, port = _endpoint(base)
    return state.tracer.start_as_current_span(
        client_span_name(method),
        kind=SpanKind.CLIENT,
        attributes={
            HTTP_REQUEST_METHOD: method,
            URL_FULL: base + path,
            SERVER_ADDRESS: address,
            SERVER_PORT: port,
            SHOP_PEER: peer,
        },
    )


def client_response(span: Span | None, status: int) -> None:
    if span is None:
        return
    span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
    # A client's 4xx is an answer it expects to handle (409, 404...); 5xx is the peer failing.
    if status >= 500:
        span.set_attribute(ERROR_TYPE, str(status))
        span.set_status(Status(StatusCode.ERROR))


def _end_client_span(span: Span, status: int) -> None:
    if status:
        client_response(span, status)
    else:
        span.set_attribute(ERROR_TYPE, "no response")
        span.set_status(Status(StatusCode.ERROR))
    span.end()


# --------------------------------------------------------------------- messaging


def producer_context(subject: str, message_id: str) -> str | None:
    """Record a PRODUCER span for an event added to the outbox and return its context as text
    for the row, so the consumer's span continues this trace whenever the relay publishes it.
    None when tracing is off."""
    state = _active
    if state is None:
        return None
    with state.tracer.start_as_current_span(
        messaging_span_name(OP_CREATE, subject),
        kind=SpanKind.PRODUCER,
        attributes={
            MESSAGING_SYSTEM: MESSAGING_SYSTEM_NATS,
            MESSAGING_DESTINATION_NAME: subject,
            MESSAGING_OPERATION_TYPE: OP_CREATE,
            MESSAGING_OPERATION_NAME: OP_CREATE,
            MESSAGING_MESSAGE_ID: message_id,
        },
    ):
        return capture()


def consumer_span(
    subject: str, headers: Mapping[str, str] | None, consumer: str, delivery: int
) -> AbstractContextManager[Span | None]:
    """A CONSUMER span for one delivery, child of the producer's context carried in the
    message headers (a new trace when there is none)."""
    state = _active
    if state is None:
        return _OFF
    parent = state.propagator.extract(dict(headers)) if headers else otel_context.Context()
    return state.tracer.start_as_current_span(
        messaging_span_name(OP_PROCESS, subject),
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            MESSAGING_SYSTEM: MESSAGING_SYSTEM_NATS,
            MESSAGING_DESTINATION_NAME: subject,
            MESSAGING_OPERATION_TYPE: OP_PROCESS,
            MESSAGING_OPERATION_NAME: OP_PROCESS,
            MESSAGING_CONSUMER_GROUP_NAME: consumer,
            SHOP_EVENT_DELIVERY: delivery,
        },
    )


def message_id(event_id: str) -> None:
    """Name the event the current consumer span handles, once it is parsed."""
    if _active is not None:
        trace.get_current_span().set_attribute(MESSAGING_MESSAGE_ID, event_id)


def failed(exc: BaseException) -> None:
    """Mark the current span failed by an error that was handled rather than raised."""
    if _active is None:
        return
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_attribute(ERROR_TYPE, type(exc).__name__)
    span.set_status(Status(StatusCode.ERROR))


def trace_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The trace context among a message's headers, to pass on with it (dead letters)."""
    state = _active
    if not headers:
        return {}
    names = {"traceparent", "tracestate"} if state is None else set(state.propagator.fields)
    return {k: v for k, v in headers.items() if k.lower() in names}
