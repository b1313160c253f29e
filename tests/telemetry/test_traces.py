"""One checkout is one trace: a real OpenTelemetry Collector (built from its Go modules by
scripts/build-otelcol.sh) receives every service's spans over OTLP/HTTP and writes them to a
file, and the trace of a checkout through the gateway is read back from it: spans of the gateway,
order, product, payment and notification, every parent present, client spans parenting the
callee's server spans, and the notification's consumer span below the order service's."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from shopkit import tracing
from shopkit.launcher import SERVICES, PlatformConfig, free_port
from shopkit.testing import eventually

from tests.e2e.support import (
    ADMIN,
    RunningPlatform,
    fill_cart,
    fresh_product,
    login,
    new_customer,
    order_body,
    started_platform,
)

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-otelcol.sh"
COLLECTOR_CONFIG = REPO / "k8s" / "observability" / "otelcol" / "config.yaml"
BUILD_TIMEOUT_SECONDS = 1500  # a cold build of the collector on 2 cores, with room
TRACED = ("gateway", "order", "product", "payment", "notification")

# Building the collector on a fresh machine is most of this module's time.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_SECONDS + 300)

# OTLP span kinds, as the collector writes them.
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5
_KIND_NAMES = {
    "SPAN_KIND_SERVER": SERVER,
    "SPAN_KIND_CLIENT": CLIENT,
    "SPAN_KIND_PRODUCER": PRODUCER,
    "SPAN_KIND_CONSUMER": CONSUMER,
}


def build_collector() -> Path:
    """The cached collector binary; built on first use."""
    done = subprocess.run(
        [str(BUILD_SCRIPT)],
        check=False,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT.name} failed:\n{done.stderr[-4000:]}")
    binary = Path(done.stdout.strip().splitlines()[-1])
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"{BUILD_SCRIPT.name} printed {binary}, which is not an executable")
    return binary


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    service: str
    attributes: dict[str, Any] = field(hash=False, compare=False)


def _value(value: dict[str, Any]) -> Any:
    for kind in ("stringValue", "boolValue", "doubleValue"):
        if kind in value:
            return value[kind]
    if "intValue" in value:
        return int(value["intValue"])  # 64-bit integers are strings in OTLP JSON
    return value


def _attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items or []}


def _kind(raw: Any) -> int:
    return _KIND_NAMES.get(raw, 0) if isinstance(raw, str) else int(raw or 0)


class Collector:
    """The collector process on a free loopback port, writing spans to a JSON-lines file."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.output = workdir / "traces.jsonl"
        self.log_path = workdir / "otelcol.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        env = {
            **os.environ,
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.port}",
            "OTELCOL_TRACES_FILE": str(self.output),
        }
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(self.binary), "--config", str(COLLECTOR_CONFIG)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the collector exited:\n{self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the collector did not listen within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def spans(self) -> list[Span]:
        """Every span written so far (a line being written is skipped until it is complete)."""
        if not self.output.exists():
            return []
        found = []
        for line in self.output.read_text().splitlines():
            try:
                export = json.loads(line)
            except ValueError:
                continue
            for resource_spans in export.get("resourceSpans", []):
                resource = _attributes(resource_spans.get("resource", {}).get("attributes"))
                for scope_spans in resource_spans.get("scopeSpans", []):
                    for raw in scope_spans.get("spans", []):
                        found.append(
                            Span(
                                trace_id=raw["traceId"],
                                span_id=raw["spanId"],
                                parent_id=raw.get("parentSpanId", ""),
                                name=raw["name"],
                                kind=_kind(raw.get("kind")),
                                service=str(resource.get("service.name", "")),
                                attributes=_attributes(raw.get("attributes")),
                            )
                        )
        return found


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    running = Collector(build_collector(), tmp_path_factory.mktemp("otelcol"))
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def traced_platform(
    tmp_path_factory: pytest.TempPathFactory, collector: Collector
) -> Iterator[RunningPlatform]:
    # The standard variables only: every process finds the collector, samples everything, and
    # exports after 100 ms instead of the SDK's default 5 s.
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    config = PlatformConfig.ephemeral(
        tmp_path_factory.mktemp("traced-platform"),
        admin=ADMIN,
        extra_env={name: dict(otel) for name in (*SERVICES, "gateway")},
    )
    with started_platform(config, lambda: f"\n--- collector ---\n{collector.log()}") as running:
        yield running


@pytest.fixture
async def shop(traced_platform: RunningPlatform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=traced_platform.gateway, timeout=30) as c:
        yield c


def _trace_of_checkout(spans: list[Span]) -> list[Span]:
    roots = [
        s
        for s in spans
        if s.service == "gateway"
        and s.kind == SERVER
        and s.attributes.get(tracing.HTTP_REQUEST_METHOD) == "POST"
        and s.attributes.get(tracing.HTTP_ROUTE) == "/api/v1/orders"
    ]
    assert len(roots) == 1, f"one checkout was made, the gateway has {len(roots)} spans of it"
    return [s for s in spans if s.trace_id == roots[0].trace_id]


def _complete(spans: list[Span]) -> bool:
    """Every service has exported its part: all of them present, every parent arrived."""
    ids = {s.span_id for s in spans}
    services = {s.service for s in spans}
    consumed = any(s.service == "notification" and s.kind == CONSUMER for s in spans)
    return (
        consumed
        and set(TRACED) <= services
        and all(not s.parent_id or s.parent_id in ids for s in spans)
    )


async def test_a_checkout_is_one_trace_from_the_gateway_to_the_notification(
    shop: httpx.AsyncClient, traced_platform: RunningPlatform, collector: Collector
) -> None:
    admin = {"Authorization": f"Bearer {await login(shop, *ADMIN)}"}
    product = await fresh_product(shop, admin)
    customer = await new_customer(shop)
    await fill_cart(shop, customer, {product["id"]: 2})
    resp = await shop.post(
        "/api/v1/orders",
        json=order_body(),
        headers={**customer.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert resp.status_code == 201, resp.text
    order_id = resp.json()["id"]

    async def notified() -> bool:
        listed = await shop.get("/api/v1/notifications", headers=customer.headers)
        return any(n["order_id"] == order_id for n in listed.json()["items"])

    assert await eventually(notified, timeout=30), "the order confirmation was not notified"

    async def checkout_trace() -> list[Span]:
        spans = collector.spans()
        # The root is the gateway's span: until the gateway has exported it, the services'
        # spans of the checkout (often sent first) make no trace yet.
        if not any(
            s.service == "gateway" and s.attributes.get(tracing.HTTP_ROUTE) == "/api/v1/orders"
            for s in spans
        ):
            return []
        found = _trace_of_checkout(spans)
        return found if _complete(found) else []

    # Each process exports on its own schedule: wait until every part has arrived (or fail on
    # what arrived, below).
    await eventually(checkout_trace, timeout=20, interval=0.2)
    spans = _trace_of_checkout(collector.spans())
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[Span]] = {}
    for s in spans:
        children.setdefault(s.parent_id, []).append(s)
    described = "\n".join(
        sorted(f"{s.service:13} {s.kind} {s.name} {s.span_id}<-{s.parent_id}" for s in spans)
    )

    # Spans of every service the checkout went through, in one trace.
    assert set(TRACED) <= {s.service for s in spans}, described

    # Exactly one root, the gateway's server span; every other span's parent is in the trace.
    roots = [s for s in spans if not s.parent_id]
    assert len(roots) == 1, described
    (root,) = roots
    assert (root.service, root.kind, root.name) == ("gateway", SERVER, "POST /api/v1/orders")
    orphans = [s for s in spans if s.parent_id and s.parent_id not in by_id]
    assert orphans == [], described

    # The gateway's upstream call is a client span whose child is the order's server span.
    (upstream_call,) = [s for s in children[root.span_id] if s.kind == CLIENT]
    (order_server,) = children[upstream_call.span_id]
    assert (order_server.service, order_server.kind) == ("order", SERVER), described
    assert order_server.name == "POST /api/v1/orders", described

    # The order's calls to product and payment: client spans whose children are the callee's
    # server spans (one per attempt).
    order_calls = [s for s in spans if s.service == "order" and s.kind == CLIENT]
    for peer in ("product", "payment"):
        calls = [s for s in order_calls if s.attributes.get(tracing.SHOP_PEER) == peer]
        assert calls, f"no client span of order -> {peer}\n{described}"
        for call in calls:
            served = children.get(call.span_id, [])
            assert [(s.service, s.kind) for s in served] == [(peer, SERVER)], described
            assert served[0].attributes.get(tracing.HTTP_ROUTE), described

    # The notification's consumer span descends from the order service (through the event's
    # producer span, written with the outbox row).
    (consumer,) = [s for s in spans if s.service == "notification" and s.kind == CONSUMER]
    assert consumer.name == "process order.confirmed", described
    producer = by_id[consumer.parent_id]
    assert (producer.service, producer.kind) == ("order", PRODUCER), described
    ancestor = producer
    while ancestor.parent_id:
        ancestor = by_id[ancestor.parent_id]
        if ancestor is order_server:
            break
    assert ancestor is order_server, described

    # The services' JSON logs name the trace too: the order's access log line of the checkout.
    log_lines = (traced_platform.config.data_dir / "logs" / "order.log").read_text().splitlines()
    logged = [json.loads(line) for line in log_lines if line.startswith("{")]
    checkout_logs = [
        e for e in logged if e.get("route") == "/api/v1/orders" and e.get("status") == 201
    ]
    assert [(e.get("trace_id"), e.get("span_id")) for e in checkout_logs] == [
        (root.trace_id, order_server.span_id)
    ]
