"""Trace context through the kit: server spans, client spans on every attempt, the outbox and
NATS headers, and log lines. Spans are collected by the SDK's own in-memory exporter; HTTP peers,
NATS and SQLite are real."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from shopkit import tracing
from shopkit.db import Database
from shopkit.discovery import StaticDiscovery
from shopkit.http import ServiceClient, new_client_session
from shopkit.logs import JsonFormatter
from shopkit.messaging import Broker, Event, OutboxRelay, consume, enqueue, outbox_table
from shopkit.resilience import PeerGuard, ResiliencePolicy
from shopkit.testing import eventually, free_port, nats_server
from sqlalchemy import MetaData, select

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SERVICE_NAME",
    "OTEL_PROPAGATORS",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever the shell running the tests has set must not decide these tests.
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def spans() -> AsyncIterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.start("kit-test", exporter=exporter)
    yield exporter
    await tracing.stop()
    assert not tracing.enabled()


def _hex(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.get_span_context()
    assert ctx is not None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _parent(span: ReadableSpan) -> str | None:
    return format(span.parent.span_id, "016x") if span.parent is not None else None


def _carried(traceparent: str | None) -> tuple[str, str]:
    """Trace and span id of a traceparent header (its flags vary: sampled, random...)."""
    assert traceparent is not None
    version, trace_id, span_id, _flags = traceparent.split("-")
    assert version == "00"
    return trace_id, span_id


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(tracing.TracingMiddleware)

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        ctx = trace.get_current_span().get_span_context()
        return {"item": item_id, "trace_id": format(ctx.trace_id, "032x")}

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def _call(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await client.get(path, headers=headers)


# ----------------------------------------------------------------------- off


async def test_without_an_endpoint_tracing_stays_off_and_costs_no_sdk() -> None:
    assert tracing.start("kit-test") is False
    assert not tracing.enabled()
    headers = {"X-Request-ID": "abc"}
    assert tracing.inject(headers) is headers
    with tracing.client_span("GET", "peer", "http://127.0.0.1:1", "/x") as span:
        assert span is None
    assert tracing.producer_context("order.confirmed", "id") is None
    # A request through the middleware is served as if it were not there.
    resp = await _call(_app(), "/items/7", {"traceparent": TRACEPARENT})
    assert resp.status_code == 200
    assert resp.json()["trace_id"] == "0" * 32


def test_the_standard_variables_switch_tracing_on() -> None:
    assert tracing.enabled_by_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"})
    assert tracing.enabled_by_environment(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}
    )
    assert not tracing.enabled_by_environment({})
    assert not tracing.enabled_by_environment(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}
    )


# ---------------------------------------------------------------------- server


async def test_a_server_span_continues_the_callers_trace_and_is_named_by_route(
    spans: InMemorySpanExporter,
) -> None:
    app = _app()
    resp = await _call(app, "/items/42", {"traceparent": TRACEPARENT})
    assert resp.status_code == 200
    assert resp.json()["trace_id"] == TRACE_ID
    (span,) = spans.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /items/{item_id}"
    assert _hex(span)[0] == TRACE_ID
    assert _parent(span) == PARENT_ID
    assert span.attributes is not None
    assert span.attributes[tracing.HTTP_ROUTE] == "/items/{item_id}"
    assert span.attributes[tracing.HTTP_RESPONSE_STATUS_CODE] == 200


async def test_without_incoming_context_a_request_starts_a_trace_and_probes_are_not_traced(
    spans: InMemorySpanExporter,
) -> None:
    app = _app()
    assert (await _call(app, "/livez")).status_code == 200
    assert (await _call(app, "/nowhere/at/all")).status_code == 404
    (span,) = spans.get_finished_spans()
    assert span.parent is None
    # No route matched: the method alone, never the raw path.
    assert span.name == "GET"
    assert span.attributes is not None
    assert span.attributes[tracing.HTTP_RESPONSE_STATUS_CODE] == 404


# ---------------------------------------------------------------------- client


@pytest.fixture
async def flaky_peer() -> AsyncIterator[tuple[str, list[str | None]]]:
    """A real HTTP peer that fails its first call with 503, and records each traceparent."""
    seen: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get("traceparent"))
        if len(seen) == 1:
            return web.json_response({"detail": "busy"}, status=503)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/thing", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_every_attempt_of_a_call_is_a_client_span_that_carries_its_own_context(
    spans: InMemorySpanExporter, flaky_peer: tuple[str, list[str | None]]
) -> None:
    url, seen = flaky_peer
    policy = ResiliencePolicy(backoff_base_seconds=0.001, backoff_max_seconds=0.002)
    session = new_client_session()
    try:
        client = ServiceClient(
            session,
            StaticDiscovery({"peer": url}),
            timeout=5,
            internal_token="t",
            guard=PeerGuard("kit-test", "peer", policy),
        )
        client.peer = "peer"
        tracer = tracing.tracer()
        with tracer.start_as_current_span("caller"):
            resp = await client.request("GET", "/thing")
    finally:
        await session.close()
    assert resp.status == 200
    finished = spans.get_finished_spans()
    caller = next(s for s in finished if s.name == "caller")
    attempts = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert len(attempts) == 2 == len(seen)
    # Each request carried the context of its own attempt's span, under the same caller.
    assert [_carried(t) for t in seen] == [_hex(s) for s in attempts]
    assert all(_parent(s) == _hex(caller)[1] for s in attempts)
    assert [s.attributes[tracing.HTTP_RESPONSE_STATUS_CODE] for s in attempts if s.attributes] == [
        503,
        200,
    ]
    assert attempts[0].status.status_code is trace.StatusCode.ERROR
    assert all(s.attributes and s.attributes[tracing.SHOP_PEER] == "peer" for s in attempts)


# ------------------------------------------------------------------- messaging


async def test_an_event_is_handled_in_a_consumer_span_whose_parent_is_the_producer(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    metadata = MetaData()
    table = outbox_table(metadata)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    handled: list[tuple[Event, str]] = []

    async def handler(event: Event) -> None:
        ctx = trace.get_current_span().get_span_context()
        handled.append((event, format(ctx.span_id, "016x")))

    tracer = tracing.tracer()
    with nats_server(tmp_path / "nats") as url:
        broker = Broker(url, name="kit-test")
        await broker.start()
        await broker.jetstream()
        relay = OutboxRelay(db, table, broker)
        tasks = [
            asyncio.create_task(relay.run()),
            asyncio.create_task(
                consume(
                    broker,
                    stream="ORDERS",
                    durable="trace-test",
                    subject="order.confirmed",
                    handler=handler,
                )
            ),
        ]
        try:
            with tracer.start_as_current_span("request"):
                async with db.session() as session:
                    event_id = await enqueue(session, table, "order.confirmed", {"n": 1})
            # The relay publishes outside the request, from a context of its own.
            assert await eventually(lambda: _async(bool(handled)), timeout=10)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await broker.close()
    async with db.session() as session:
        stored = await session.scalar(select(table.c.trace_context))
    await db.dispose()
    finished = spans.get_finished_spans()
    request = next(s for s in finished if s.name == "request")
    producer = next(s for s in finished if s.kind is SpanKind.PRODUCER)
    consumer = next(s for s in finished if s.kind is SpanKind.CONSUMER)
    assert producer.name == "create order.confirmed"
    assert consumer.name == "process order.confirmed"
    assert _parent(producer) == _hex(request)[1]
    assert _parent(consumer) == _hex(producer)[1]
    assert _hex(consumer)[0] == _hex(request)[0]
    assert _carried(json.loads(stored)["traceparent"]) == _hex(producer)
    event, running_in = handled[0]
    assert event.id == event_id
    assert running_in == _hex(consumer)[1]
    assert consumer.attributes is not None
    assert consumer.attributes[tracing.MESSAGING_MESSAGE_ID] == event_id


async def _async(value: Any) -> Any:
    return value


def test_stored_context_becomes_headers_only_as_strings() -> None:
    assert tracing.captured_headers(None) == {}
    assert tracing.captured_headers("not json") == {}
    assert tracing.captured_headers('["a"]') == {}
    assert tracing.captured_headers('{"traceparent": "x", "n": 1}') == {"traceparent": "x"}


# ------------------------------------------------------------------------ logs


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("kit-test"))
    logger = logging.getLogger("test.tracing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)


def test_log_lines_carry_the_ids_of_the_active_span(
    spans: InMemorySpanExporter, log_lines: io.StringIO
) -> None:
    logger = logging.getLogger("test.tracing")
    logger.info("outside")
    with tracing.tracer().start_as_current_span("work") as span:
        logger.info("inside")
    outside, inside = (json.loads(line) for line in log_lines.getvalue().splitlines())
    assert "trace_id" not in outside
    assert "span_id" not in outside
    ctx = span.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")


async def test_the_sampler_comes_from_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    exporter = InMemorySpanExporter()
    assert tracing.start("kit-test", exporter=exporter)
    try:
        resp = await _call(_app(), "/items/1")
        # A sampled parent is followed whatever the ratio: parent-based.
        sampled = await _call(_app(), "/items/2", {"traceparent": TRACEPARENT})
    finally:
        await tracing.stop()
    assert resp.status_code == sampled.status_code == 200
    (span,) = exporter.get_finished_spans()
    assert _hex(span)[0] == TRACE_ID
