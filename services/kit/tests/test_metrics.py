"""The kit's own metrics: outbox lag, primed series, and the switch that turns metrics off."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic_settings import SettingsConfigDict
from shopkit.app import create_service_app
from shopkit.db import Database
from shopkit.http import ServiceClient
from shopkit.messaging import Broker, OutboxRelay, consume, enqueue, outbox_table
from shopkit.settings import ServiceSettings
from shopkit.testing import eventually, nats_server, running_app
from sqlalchemy import MetaData


class MeteredSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SWEETSLICE_METERED_", frozen=True, extra="ignore")
    service_name: str = "metered"


class LarderClient(ServiceClient):
    peer = "larder"


router = APIRouter()


@router.get("/things/{thing_id}")
async def thing(thing_id: str) -> dict[str, str]:
    return {"id": thing_id}


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _app(
    tmp_path: Path, service: str, peers: dict[str, str] | None = None, **overrides: object
) -> FastAPI:
    settings = MeteredSettings(
        data_dir=tmp_path,
        user_url="http://127.0.0.1:9",
        service_name=service,
        **overrides,  # type: ignore[arg-type]
    )
    return create_service_app(
        settings,
        title="metered",
        description="metered",
        routers=[router],
        migrations=None,
        peers=peers,
    )


async def test_outbox_lag_grows_while_the_broker_is_away_and_drops_once_published(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    metadata = MetaData()
    table = outbox_table(metadata)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    service = "lag-test"
    away = Broker("nats://127.0.0.1:9", name=service)  # nothing listens there
    relay = OutboxRelay(db, table, away)
    assert _value("shop_outbox_lag_seconds", service=service) == 0
    assert _value("shop_outbox_published_total", service=service, outcome="new") == 0
    async with db.session() as session:
        await enqueue(session, table, "order.confirmed", {"n": 1})
    await asyncio.sleep(0.3)
    with pytest.raises(ConnectionError):
        await relay.publish_pending()
    first = _value("shop_outbox_lag_seconds", service=service)
    assert first is not None
    assert first >= 0.3
    await asyncio.sleep(0.2)
    with pytest.raises(ConnectionError):
        await relay.publish_pending()
    second = _value("shop_outbox_lag_seconds", service=service)
    assert second is not None
    assert second >= first + 0.2

    with nats_server(tmp_path / "nats") as url:
        broker = Broker(url, name=service)
        await broker.start()
        await broker.jetstream()
        published = await OutboxRelay(db, table, broker).publish_pending()
        await broker.close()
    assert published == 1
    assert _value("shop_outbox_lag_seconds", service=service) == 0
    assert _value("shop_outbox_published_total", service=service, outcome="new") == 1
    await db.dispose()


async def test_a_consumer_exports_its_dead_letter_and_outcome_series_before_any_event(
    tmp_path: Path,
) -> None:
    durable = "primed-consumer"
    assert _value("shop_events_dead_lettered_total", consumer=durable) is None

    async def handler(_: object) -> None:
        return None

    with nats_server(tmp_path / "nats") as url:
        broker = Broker(url, name=durable)
        await broker.start()
        task = asyncio.create_task(
            consume(broker, stream="ORDERS", durable=durable, subject="order.>", handler=handler)
        )

        async def primed() -> bool:
            return _value("shop_events_dead_lettered_total", consumer=durable) == 0

        assert await eventually(primed, timeout=5)
        for outcome in ("handled", "duplicate", "retried", "dead-lettered"):
            assert _value("shop_events_total", consumer=durable, outcome=outcome) == 0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await broker.close()


async def test_metrics_on_counts_requests_and_primes_peers(tmp_path: Path) -> None:
    app = _app(tmp_path, "metered-on", peers={"pantry": "http://127.0.0.1:9"})
    async with running_app(app) as client:
        # Known before the first call, before its client even exists: the breaker closed,
        # every outcome at 0. A client made later for another peer primes that one.
        assert _value("shop_peer_breaker_state", service="metered-on", peer="pantry") == 0
        for outcome in ("ok", "failed", "short-circuited", "rejected"):
            labels = {"service": "metered-on", "peer": "pantry", "outcome": outcome}
            assert _value("shop_peer_calls_total", **labels) == 0
        assert _value("shop_peer_breaker_state", service="metered-on", peer="larder") is None
        app.state.runtime.client(LarderClient)
        assert _value("shop_peer_breaker_state", service="metered-on", peer="larder") == 0
        for _ in range(3):
            assert (await client.get("/things/abc")).status_code == 200
        labels = {"service": "metered-on", "method": "GET", "route": "/things/{thing_id}"}
        assert _value("shop_http_requests_total", **labels, status="200") == 3
        assert _value("shop_http_request_duration_seconds_count", **labels) == 3
        scraped = await client.get("/metrics")
        assert scraped.status_code == 200
        assert 'shop_http_requests_total{method="GET",route="/things/{thing_id}"' in scraped.text


async def test_metrics_off_measures_nothing_and_has_no_metrics_route(tmp_path: Path) -> None:
    app = _app(tmp_path, "metered-off", metrics_enabled=False)
    async with running_app(app) as client:
        assert (await client.get("/things/abc")).status_code == 200
        assert (await client.get("/livez")).status_code == 200
        scraped = await client.get("/metrics")
        assert scraped.status_code == 404
        assert scraped.headers["content-type"] == "application/problem+json"
        assert scraped.json()["type"].endswith("/not-found")
        # The request id still comes back: only measuring is off, not the request context.
        assert scraped.headers["x-request-id"]
    labels = {"service": "metered-off", "method": "GET", "route": "/things/{thing_id}"}
    assert _value("shop_http_requests_total", **labels, status="200") is None
    assert _value("shop_http_request_duration_seconds_count", **labels) is None


def test_the_switch_reads_the_service_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEETSLICE_METERED_METRICS_ENABLED", "false")
    assert MeteredSettings().metrics_enabled is False
    monkeypatch.delenv("SWEETSLICE_METERED_METRICS_ENABLED")
    assert MeteredSettings().metrics_enabled is True


_WORKER = """
import sys, time
from shopkit.messaging import OUTBOX_LAG
from shopkit.metrics import CHECKOUT_OUTCOMES, CHECKOUTS, prime
prime(CHECKOUTS, CHECKOUT_OUTCOMES)
CHECKOUTS.labels("confirmed").inc()
OUTBOX_LAG.labels("order").set(float(sys.argv[1]))
"""


def test_workers_add_up_and_the_latest_lag_wins(tmp_path: Path) -> None:
    """Several worker processes of one service, as uvicorn runs them with <PREFIX>WORKERS:
    counters add up over the workers, primed series stay at 0, and the outbox lag is the
    reading of whichever worker's relay looked last, not the largest ever seen."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for lag in ("30", "2"):  # an older worker saw 30 s; a later pass found 2 s
        subprocess.run([sys.executable, "-c", _WORKER, lag], env=env, check=True)
    read = "from shopkit.observability import metrics_payload; print(metrics_payload()[0].decode())"
    text = subprocess.run(
        [sys.executable, "-c", read], env=env, check=True, capture_output=True, text=True
    ).stdout
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("shop_order_checkouts_total", (("outcome", "confirmed"),))] == 2
    assert samples[("shop_order_checkouts_total", (("outcome", "declined"),))] == 0
    assert samples[("shop_outbox_lag_seconds", (("service", "order"),))] == 2
