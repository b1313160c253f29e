"""The outbox relay and consumers against a real NATS server with JetStream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
import pytest
from shopkit.db import Database
from shopkit.messaging import Broker, Event, OutboxRelay, consume, enqueue, outbox_table
from shopkit.testing import eventually, nats_server
from sqlalchemy import MetaData, func, select


async def _setup(tmp_path: Path) -> tuple[Database, MetaData]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    metadata = MetaData()
    outbox_table(metadata)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return db, metadata


async def test_outbox_rows_are_published_once_and_deduplicated(tmp_path: Path) -> None:
    db, metadata = await _setup(tmp_path)
    table = metadata.tables["outbox"]
    with nats_server(tmp_path / "nats") as url:
        broker = Broker(url, name="test")
        await broker.start()
        await broker.jetstream()
        relay = OutboxRelay(db, table, broker)
        task = asyncio.create_task(relay.run())
        async with db.session() as session:
            ids = [await enqueue(session, table, "order.confirmed", {"n": n}) for n in range(3)]
        async with db.session() as session:
            # A rolled-back transaction must publish nothing.
            await enqueue(session, table, "order.confirmed", {"n": "lost"})
            await session.rollback()

        async def all_sent() -> bool:
            async with db.session() as session:
                unsent = await session.scalar(
                    select(func.count()).where(table.c.published_at.is_(None))
                )
            return unsent == 0

        assert await eventually(all_sent, timeout=5)
        # Republishing the same rows (a relay that crashed before marking them) is dropped by
        # the server's duplicate window: the stream still holds each event once.
        for event_id in ids:
            await broker.publish("order.confirmed", b"{}", msg_id=event_id)
        js = await broker.jetstream()
        info = await js.stream_info("ORDERS")
        assert info.state.messages == 3
        task.cancel()
        await broker.close()
    await db.dispose()


async def test_relay_waits_while_the_broker_is_down(tmp_path: Path) -> None:
    db, metadata = await _setup(tmp_path)
    table = metadata.tables["outbox"]
    broker = Broker("nats://127.0.0.1:9", name="test")  # nothing listens there
    relay = OutboxRelay(db, table, broker)
    async with db.session() as session:
        await enqueue(session, table, "order.confirmed", {"n": 1})
    with pytest.raises(ConnectionError):
        await relay.publish_pending()
    async with db.session() as session:
        unsent = await session.scalar(select(func.count()).where(table.c.published_at.is_(None)))
    assert unsent == 1
    await db.dispose()


async def test_consumer_acks_retries_and_terminates(tmp_path: Path) -> None:
    with nats_server(tmp_path / "nats") as url:
        broker = Broker(url, name="consumer")
        await broker.start()
        await broker.jetstream()
        seen: list[str] = []
        attempts: dict[str, int] = {}

        async def handler(event: Event) -> None:
            attempts[event.id] = attempts.get(event.id, 0) + 1
            if event.data.get("fail_times", 0) >= attempts[event.id]:
                raise RuntimeError("not yet")
            seen.append(event.id)

        task = asyncio.create_task(
            consume(
                broker,
                stream="ORDERS",
                durable="test-consumer",
                subject="order.>",
                handler=handler,
                max_deliver=3,
            )
        )
        nc = await nats.connect(url)
        pub = nc.jetstream()

        def envelope(event_id: str, **data: object) -> bytes:
            return json.dumps(
                {"id": event_id, "type": "order.x", "occurred_at": "now", "data": data}
            ).encode()

        await pub.publish("order.x", envelope("ok"))
        await pub.publish("order.x", envelope("flaky", fail_times=1))
        await pub.publish("order.x", envelope("hopeless", fail_times=99))
        await pub.publish("order.x", b"not json")

        async def settled() -> bool:
            return "ok" in seen and "flaky" in seen and attempts.get("hopeless") == 3

        assert await eventually(settled, timeout=15)
        await asyncio.sleep(0.5)
        assert attempts["hopeless"] == 3  # terminated after max_deliver, not retried forever
        assert seen.count("ok") == 1
        task.cancel()
        await nc.close()
        await broker.close()
