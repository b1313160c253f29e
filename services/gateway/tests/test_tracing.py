"""The gateway starts the trace: a server span per proxied request, a client span for the
upstream call whose context the upstream receives, and a client's own context kept as a link
only (unless configured as trusted)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from shopkit import tracing

Received = Callable[[httpx.Response], dict[str, list[str]]]
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
CLIENT_CONTEXT = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01", "tracestate": "x=1"}


@pytest.fixture
async def spans(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[InMemorySpanExporter]:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    exporter = InMemorySpanExporter()
    assert tracing.start("gateway", exporter=exporter)
    yield exporter
    await tracing.stop()


def _ids(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.get_span_context()
    assert ctx is not None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _carried(traceparent: str) -> tuple[str, str]:
    """Trace and span id of a traceparent header (its flags vary: sampled, random...)."""
    version, trace_id, span_id, _flags = traceparent.split("-")
    assert version == "00"
    return trace_id, span_id


def _server_and_client(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, ReadableSpan]:
    finished = exporter.get_finished_spans()
    (server,) = [s for s in finished if s.kind is SpanKind.SERVER]
    (client,) = [s for s in finished if s.kind is SpanKind.CLIENT]
    return server, client


async def test_the_gateway_starts_a_trace_and_keeps_a_clients_context_as_a_link(
    spans: InMemorySpanExporter, gateway_factory: Any, received: Received
) -> None:
    async with gateway_factory() as gateway:
        response = await gateway.get("/api/v1/products/p-1", headers=CLIENT_CONTEXT)
    assert response.status_code == 200
    server, client = _server_and_client(spans)
    trace_id, server_id = _ids(server)
    assert server.parent is None
    assert trace_id != CLIENT_TRACE
    assert [(format(link.context.trace_id, "032x")) for link in server.links] == [CLIENT_TRACE]
    # Named by the routed collection, never by the raw path.
    assert server.name == "GET /api/v1/products/*"
    assert server.attributes is not None
    assert server.attributes[tracing.HTTP_RESPONSE_STATUS_CODE] == 200
    assert client.parent is not None
    assert format(client.parent.span_id, "016x") == server_id
    # The upstream sees the gateway's client span as its parent, and nothing of the client's.
    seen = received(response)
    assert [_carried(t) for t in seen["traceparent"]] == [_ids(client)]
    assert _ids(client)[0] == trace_id
    assert "tracestate" not in seen


async def test_a_trusted_client_context_is_continued(
    spans: InMemorySpanExporter, gateway_factory: Any, received: Received
) -> None:
    async with gateway_factory(trust_client_trace_context=True) as gateway:
        response = await gateway.get("/api/v1/products", headers=CLIENT_CONTEXT)
    assert response.status_code == 200
    server, client = _server_and_client(spans)
    assert _ids(server)[0] == CLIENT_TRACE
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == CLIENT_SPAN
    assert server.name == "GET /api/v1/products"
    assert [_carried(t) for t in received(response)["traceparent"]] == [_ids(client)]
    assert _ids(client)[0] == CLIENT_TRACE


async def test_refusals_are_traced_without_an_upstream_call(
    spans: InMemorySpanExporter, gateway_factory: Any
) -> None:
    async with gateway_factory() as gateway:
        response = await gateway.get("/api/v1/orders")
    assert response.status_code == 401
    (server,) = spans.get_finished_spans()
    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes[tracing.HTTP_RESPONSE_STATUS_CODE] == 401


async def test_with_tracing_off_a_clients_trace_headers_still_stop_at_the_gateway(
    gateway: httpx.AsyncClient, received: Received
) -> None:
    assert not tracing.enabled()
    response = await gateway.get("/api/v1/products", headers=CLIENT_CONTEXT)
    seen = received(response)
    assert "traceparent" not in seen
    assert "tracestate" not in seen
