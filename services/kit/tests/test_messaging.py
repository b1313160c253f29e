"""The outbox relay and consumers against a real NATS server with JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY
from shopkit.db import Database, utcnow
from shopkit.errors import install_problem_handlers
from shopkit.messaging import (
    Broker,
    Event,
    Inbox,
    OutboxRelay,
    consume,
    enqueue,
    inbox_audit_router,
    inbox_table,
    outbox_audit_router,
    outbox_table,
    watch_dead_letters,
)
from shopkit.testing import eventually, nats_server
from sqlalchemy import MetaData, Table, func, select, update


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


# ------------------------------------------------------------ inbox, dead letters, audits


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _envelope(event_id: str, subject: str = "order.x", **data: object) -> bytes:
    return json.dumps(
        {"id": event_id, "type": subject, "occurred_at": "now", "data": data}
    ).encode()


async def _inbox_db(tmp_path: Path) -> tuple[Database, Table]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'inbox.sqlite3'}")
    metadata = MetaData()
    table = inbox_table(metadata)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return db, table


async def _inbox_rows(db: Database, table: Table) -> dict[str, Any]:
    async with db.session() as session:
        rows = (await session.execute(select(table))).mappings().all()
    return {row["event_id"]: dict(row) for row in rows}


@contextlib.asynccontextmanager
async def _consumer(url: str, durable: str, handler: Any, **options: Any) -> AsyncIterator[Any]:
    """The consumer running under test, and a JetStream context to publish and inspect with."""
    broker = Broker(url, name=durable)
    await broker.start()
    await broker.jetstream()
    task = asyncio.create_task(
        consume(
            broker, stream="ORDERS", durable=durable, subject="order.>", handler=handler, **options
        )
    )
    nc = await nats.connect(url)
    try:
        yield nc.jetstream()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await nc.close()
        await broker.close()


async def _dead_letters(js: Any, durable: str) -> list[Any]:
    sub = await js.pull_subscribe(
        f"dead.{durable}", durable=f"{durable}-reader", stream="DEADLETTER"
    )
    try:
        return list(await sub.fetch(batch=10, timeout=2))
    except NatsTimeoutError:
        return []
    finally:
        await sub.unsubscribe()


async def _settled(js: Any, durable: str, through: int) -> bool:
    info = await js.consumer_info("ORDERS", durable)
    return bool(
        info.delivered.stream_seq >= through and not info.num_ack_pending and not info.num_pending
    )


async def test_a_message_that_is_not_an_event_is_dead_lettered_and_terminated(
    tmp_path: Path,
) -> None:
    durable = "poison-test"
    handled: list[str] = []

    async def handler(event: Event) -> None:
        handled.append(event.id)

    with nats_server(tmp_path / "nats") as url:
        async with _consumer(url, durable, handler, max_deliver=5) as js:
            before = _counter("shop_events_dead_lettered_total", consumer=durable)
            poison = await js.publish("order.x", b"{not json", headers={"Nats-Msg-Id": "p1"})
            long_id = await js.publish(
                "order.x", _envelope("x" * 101), headers={"Nats-Msg-Id": "p2"}
            )
            good = await js.publish("order.x", _envelope("fine"), headers={"Nats-Msg-Id": "p3"})
            assert await eventually(lambda: _settled(js, durable, good.seq), timeout=15)
            assert handled == ["fine"]
            letters = await _dead_letters(js, durable)
            assert [m.data for m in letters] == [b"{not json", _envelope("x" * 101)]
            first = letters[0].headers
            assert first["Dead-Letter-Consumer"] == durable
            assert first["Dead-Letter-Stream"] == "ORDERS"
            assert first["Dead-Letter-Subject"] == "order.x"
            assert first["Dead-Letter-Sequence"] == str(poison.seq)
            assert first["Dead-Letter-Deliveries"] == "1"
            assert first["Dead-Letter-Error"].startswith("not an event")
            assert "\n" not in first["Dead-Letter-Error"]
            assert letters[1].headers["Dead-Letter-Sequence"] == str(long_id.seq)
            assert _counter("shop_events_dead_lettered_total", consumer=durable) == before + 2
            # The depth gauge reads the stream itself: 2 wait for this consumer, none for one
            # that set nothing aside.
            watcher = Broker(url, name="watcher")
            await watcher.start()
            watch = asyncio.create_task(
                watch_dead_letters(watcher, [durable, "tidy-test"], interval=0.1)
            )
            try:

                def depth(consumer: str) -> float | None:
                    return REGISTRY.get_sample_value(
                        "shop_dead_letter_messages", {"consumer": consumer}
                    )

                async def both_counted() -> bool:
                    return depth(durable) == 2

                assert await eventually(both_counted, timeout=5), depth(durable)
                assert depth("tidy-test") == 0
            finally:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
                await watcher.close()
            # Terminated at the first delivery: never delivered again.
            info = await js.consumer_info("ORDERS", durable)
            assert info.delivered.consumer_seq == 3 and info.num_ack_pending == 0


async def test_a_handler_failing_every_delivery_sends_the_event_to_the_dead_letters(
    tmp_path: Path,
) -> None:
    durable = "hopeless-test"
    db, table = await _inbox_db(tmp_path)
    attempts: list[int] = []

    async def handler(event: Event) -> None:
        attempts.append(event.delivery)
        raise RuntimeError("the mail relay said no\r\nX-Injected: yes")

    with nats_server(tmp_path / "nats") as url:
        async with _consumer(url, durable, handler, max_deliver=3, inbox=Inbox(db, table)) as js:
            await js.publish("order.x", _envelope("doomed"), headers={"Nats-Msg-Id": "d1"})

            async def dead() -> bool:
                row = (await _inbox_rows(db, table)).get("doomed")
                return row is not None and row["status"] == "dead"

            assert await eventually(dead, timeout=20)
            assert attempts == [1, 2, 3]
            [letter] = await _dead_letters(js, durable)
            assert letter.data == _envelope("doomed")
            assert letter.headers["Dead-Letter-Deliveries"] == "3"
            assert letter.headers["Dead-Letter-Event-Id"] == "doomed"
            assert letter.headers["Dead-Letter-Error"] == (
                "RuntimeError: the mail relay said no X-Injected: yes"
            )
            assert _counter("shop_events_dead_lettered_total", consumer=durable) == 1
            assert _counter("shop_events_total", consumer=durable, outcome="retried") == 2
            row = (await _inbox_rows(db, table))["doomed"]
            assert (row["deliveries"], row["handled_at"]) == (3, None)
            await asyncio.sleep(1.0)
            assert attempts == [1, 2, 3]  # terminated, not redelivered
    await db.dispose()


async def test_an_event_delivered_again_is_handled_once(tmp_path: Path) -> None:
    durable = "dedupe-test"
    db, table = await _inbox_db(tmp_path)
    effects: list[str] = []

    async def handler(event: Event) -> None:
        effects.append(event.id)

    with nats_server(tmp_path / "nats") as url:
        async with _consumer(url, durable, handler, inbox=Inbox(db, table)) as js:
            # Other message ids defeat the duplicate window: a republish after it had passed.
            for msg_id in ("m1", "m2", "m3"):
                last = await js.publish(
                    "order.x", _envelope("once"), headers={"Nats-Msg-Id": msg_id}
                )
            assert await eventually(lambda: _settled(js, durable, last.seq), timeout=15)
        row = (await _inbox_rows(db, table))["once"]
    assert effects == ["once"]
    assert (row["status"], row["deliveries"], row["duplicates"]) == ("handled", 3, 2)
    assert row["consumer"] == durable and row["subject"] == "order.x"
    assert row["handled_at"] is not None
    assert row["first_delivery_at"] <= row["last_delivery_at"]
    assert _counter("shop_events_total", consumer=durable, outcome="duplicate") == 2
    assert _counter("shop_events_total", consumer=durable, outcome="handled") == 1
    await db.dispose()


async def test_a_handler_slower_than_the_ack_wait_runs_once_per_event(tmp_path: Path) -> None:
    durable = "slow-test"
    db, table = await _inbox_db(tmp_path)
    runs: list[str] = []

    async def handler(event: Event) -> None:
        runs.append(event.id)
        await asyncio.sleep(2.5)

    with nats_server(tmp_path / "nats") as url:
        async with _consumer(
            url, durable, handler, ack_wait=1.0, concurrency=4, inbox=Inbox(db, table)
        ) as js:
            for n in range(3):
                last = await js.publish(
                    "order.x", _envelope(f"slow-{n}"), headers={"Nats-Msg-Id": f"s{n}"}
                )
            assert await eventually(lambda: _settled(js, durable, last.seq), timeout=30)
            info = await js.consumer_info("ORDERS", durable)
            assert info.config.ack_wait == 1.0
        rows = await _inbox_rows(db, table)
    # JetStream did redeliver while the handlers ran (more deliveries than messages), and no
    # event ran twice.
    assert info.delivered.consumer_seq > 3
    assert sorted(runs) == ["slow-0", "slow-1", "slow-2"]
    assert all(r["status"] == "handled" for r in rows.values()) and len(rows) == 3
    assert all(r["duplicates"] == 0 for r in rows.values())
    assert sum(r["deliveries"] for r in rows.values()) > 3
    assert _counter("shop_events_total", consumer=durable, outcome="busy") >= 1
    await db.dispose()


async def test_a_republish_after_a_relay_crash_is_dropped_by_the_server(tmp_path: Path) -> None:
    db, metadata = await _setup(tmp_path)
    table = metadata.tables["outbox"]
    with nats_server(tmp_path / "nats") as url:
        broker = Broker(url, name="relay-crash-test")
        await broker.start()
        js = await broker.jetstream()
        relay = OutboxRelay(db, table, broker)
        async with db.session() as session:
            ids = [await enqueue(session, table, "order.confirmed", {"n": n}) for n in range(4)]
        assert await relay.publish_pending() == 4
        # What a relay killed between publishing and marking leaves behind.
        async with db.session() as session:
            await session.execute(
                update(table).where(table.c.id.in_(ids[:3])).values(published_at=None)
            )
        assert await relay.publish_pending() == 3
        info = await js.stream_info("ORDERS")
        assert info.state.messages == 4
        assert (
            _counter("shop_outbox_published_total", service="relay-crash-test", outcome="duplicate")
            == 3
        )
        assert (
            _counter("shop_outbox_published_total", service="relay-crash-test", outcome="new") == 4
        )
        await broker.close()
    await db.dispose()


async def test_an_existing_consumer_takes_a_new_ack_wait_and_delivery_budget(
    tmp_path: Path,
) -> None:
    durable = "reconfigured-test"

    async def handler(event: Event) -> None:
        return None

    with nats_server(tmp_path / "nats") as url:
        async with _consumer(url, durable, handler, ack_wait=30.0, max_deliver=10) as js:
            assert await eventually(lambda: _consumer_exists(js, durable), timeout=10)
        async with _consumer(url, durable, handler, ack_wait=2.0, max_deliver=4) as js:

            async def updated() -> bool:
                info = await js.consumer_info("ORDERS", durable)
                return bool(info.config.ack_wait == 2.0 and info.config.max_deliver == 4)

            assert await eventually(updated, timeout=10)


async def _consumer_exists(js: Any, durable: str) -> bool:
    try:
        await js.consumer_info("ORDERS", durable)
    except NotFoundError:
        return False
    return True


async def test_the_audits_list_outbox_and_inbox_rows_in_pages(tmp_path: Path) -> None:
    db, metadata = await _setup(tmp_path)
    outbox = metadata.tables["outbox"]
    inbox = inbox_table(metadata)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    async with db.session() as session:
        ids = [await enqueue(session, outbox, "order.confirmed", {"n": n}) for n in range(5)]
        await session.execute(
            update(outbox).where(outbox.c.id.in_(ids[:3])).values(published_at=utcnow())
        )
    records = Inbox(db, inbox)
    for event_id in ids[:3]:
        assert await records.receive(event_id, "c", "order.confirmed")
        assert await records.settle(event_id, "c", "handled")
    assert not await records.receive(ids[0], "c", "order.confirmed")
    assert await records.receive(ids[3], "c", "order.confirmed")
    assert await records.settle(ids[3], "c", "dead")

    app = FastAPI()
    app.state.db = db
    app.state.internal_token = "secret"
    install_problem_handlers(app)
    app.include_router(outbox_audit_router(outbox))
    app.include_router(inbox_audit_router(inbox))
    transport = httpx.ASGITransport(app=app)
    headers = {"X-Internal-Token": "secret"}
    async with httpx.AsyncClient(transport=transport, base_url="http://kit") as client:
        assert (await client.get("/internal/outbox/audit")).status_code == 401
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            resp = await client.get("/internal/outbox/audit", params=params, headers=headers)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert (body["written"], body["published"], body["unpublished"]) == (5, 3, 2)
            seen += [item["id"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(ids)

        resp = await client.get("/internal/inbox/audit", params={"limit": 3}, headers=headers)
        body = resp.json()
        assert (body["received"], body["handled"], body["dead"]) == (0, 3, 1)
        assert (body["deliveries"], body["duplicates"]) == (5, 1)
        assert len(body["items"]) == 3 and body["next_cursor"]
        rest = await client.get(
            "/internal/inbox/audit", params={"cursor": body["next_cursor"]}, headers=headers
        )
        items = body["items"] + rest.json()["items"]
        assert [i["event_id"] for i in items] == sorted(ids[:4])
        assert rest.json()["next_cursor"] is None
        bad = await client.get("/internal/inbox/audit", params={"cursor": "x"}, headers=headers)
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
        huge = await client.get("/internal/outbox/audit", params={"limit": 10**9}, headers=headers)
        assert huge.status_code == 422
    await db.dispose()
