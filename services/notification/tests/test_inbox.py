"""The inbox: every event handled once in effect, however often it is delivered, and listed for
the fault suite's checker. Real NATS JetStream, a real SMTP server, the app in-process."""

from __future__ import annotations

import asyncio
import json
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from alembic import command
from fastapi import FastAPI
from prometheus_client import REGISTRY
from shop_notification.app import create_app
from shop_notification.mail import MailboxTransport, build_message
from shopkit.db import Database
from shopkit.migrations import _config, migrate
from shopkit.settings import DEV_INTERNAL_TOKEN
from shopkit.testing import eventually
from sqlalchemy import text

WAIT = 30.0
INTERNAL = {"X-Internal-Token": DEV_INTERNAL_TOKEN}
MIGRATIONS = Path(create_app.__code__.co_filename).parent / "migrations"


def _envelope(event_id: str, subject: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {"id": event_id, "type": subject, "occurred_at": "2025-05-01T12:00:00+00:00", "data": data}
    ).encode()


def _counter(name: str, **labels: str) -> float:
    """This process's metric, summed over both consumers (the app runs in the test's process)."""
    return sum(
        REGISTRY.get_sample_value(name, {"consumer": consumer, **labels}) or 0.0
        for consumer in ("notification-orders", "notification-payments")
    )


async def _inbox(client: Any) -> dict[str, Any]:
    resp = await client.get("/internal/inbox/audit", headers=INTERNAL)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_every_event_is_recorded_once_and_a_repeat_does_nothing(
    app: FastAPI, bus: Any, serving: Any, smtp: Any, users: Any, rows: Any
) -> None:
    customer = users.add("inbox@example.com")
    confirmed = bus.confirmed(customer)
    confirmed_id = str(uuid.uuid4())
    refunded_id = str(uuid.uuid4())
    refunded = {
        "order_id": confirmed["order_id"],
        "customer_id": customer,
        "charge_id": str(uuid.uuid4()),
        "refund_id": str(uuid.uuid4()),
        "amount": {"amount": 500, "currency": "USD"},
    }
    handled = _counter("shop_events_total", outcome="handled")
    async with serving(app) as client:
        await bus.publish("order.confirmed", confirmed, event_id=confirmed_id)
        payments = await bus.publish_raw(
            "payment.refunded",
            _envelope(refunded_id, "payment.refunded", refunded),
            msg_id=refunded_id,
        )
        first = await bus.publish_raw(
            "order.confirmed",
            _envelope(confirmed_id, "order.confirmed", confirmed),
            msg_id="republished-past-the-window",
        )
        assert await eventually(
            lambda: bus.settled("ORDERS", "notification-orders", through=first), timeout=WAIT
        )
        assert await eventually(
            lambda: bus.settled("PAYMENTS", "notification-payments", through=payments),
            timeout=WAIT,
        )
        audit = await _inbox(client)
    assert len(smtp.to("inbox@example.com")) == 1
    [row] = await rows()
    assert (row.event_id, row.status, row.attempts) == (confirmed_id, "sent", 1)
    by_event = {item["event_id"]: item for item in audit["items"]}
    assert set(by_event) == {confirmed_id, refunded_id}
    mine = by_event[confirmed_id]
    assert (mine["consumer"], mine["subject"], mine["status"]) == (
        "notification-orders",
        "order.confirmed",
        "handled",
    )
    # The second copy arrived after the first was handled, or while it was (then it came back
    # once the inbox could tell): either way it ran nothing.
    assert mine["deliveries"] >= 2 and mine["handled_at"] is not None
    assert by_event[refunded_id]["consumer"] == "notification-payments"
    assert by_event[refunded_id]["status"] == "handled"
    assert (audit["handled"], audit["received"], audit["dead"]) == (2, 0, 0)
    assert _counter("shop_events_total", outcome="handled") == handled + 2


async def test_a_poison_message_goes_to_the_dead_letters(
    app: FastAPI, bus: Any, serving: Any, smtp: Any
) -> None:
    dead = _counter("shop_events_dead_lettered_total")
    async with serving(app) as client:
        seq = await bus.publish_raw("order.confirmed", b"{not json", msg_id=str(uuid.uuid4()))
        assert await eventually(
            lambda: bus.settled("ORDERS", "notification-orders", through=seq), timeout=WAIT
        )

        async def dead_lettered() -> bool:
            info = await bus.js.stream_info("DEADLETTER")
            return bool(info.state.messages == 1)

        assert await eventually(dead_lettered, timeout=WAIT)
        msg = await bus.js.get_last_msg("DEADLETTER", "dead.notification-orders")
        assert msg.data == b"{not json"
        assert msg.headers is not None
        assert msg.headers["Dead-Letter-Consumer"] == "notification-orders"
        assert _counter("shop_events_dead_lettered_total") == dead + 1
        assert (await _inbox(client))["items"] == []
    assert smtp.received == []


async def test_a_send_slower_than_the_ack_wait_sends_one_email(
    make_settings: Any, bus: Any, serving: Any, smtp: Any, users: Any
) -> None:
    customer = users.add("slow-relay@example.com")
    app = create_app(make_settings(ack_wait_seconds=1.0, fault_handler_delay_seconds=2.5))
    async with serving(app) as client:
        ids = [await bus.publish("order.confirmed", bus.confirmed(customer)) for _ in range(3)]

        async def all_handled() -> bool:
            audit = await _inbox(client)
            return audit["handled"] == 3

        assert await eventually(all_handled, timeout=WAIT)
        info = await bus.js.consumer_info("ORDERS", "notification-orders")
        audit = await _inbox(client)
        deliveries = (await client.get("/internal/deliveries", headers=INTERNAL)).json()["items"]
    # Redelivered while the sends were under way (more deliveries than events), one email each.
    assert info.delivered.consumer_seq > 3
    assert len(smtp.to("slow-relay@example.com")) == 3
    assert sorted(d["event_id"] for d in deliveries) == sorted(ids)
    assert all(d["status"] == "sent" and d["attempts"] == 1 for d in deliveries)
    assert sorted(i["event_id"] for i in audit["items"]) == sorted(ids)


async def test_the_inbox_route_needs_the_internal_token(app: FastAPI, serving: Any) -> None:
    async with serving(app) as client:
        assert (await client.get("/internal/inbox/audit")).status_code == 401
        assert (await client.get("/internal/outbox/audit", headers=INTERNAL)).status_code == 404


async def test_the_mailbox_keeps_a_second_copy_of_one_message(tmp_path: Path) -> None:
    transport = MailboxTransport(tmp_path / "mailbox")

    def message() -> EmailMessage:
        return build_message(
            sender="Sweet Slice <orders@sweetslice.local>",
            recipient="twice@example.com",
            subject="Hello",
            body="Hello",
            message_id="n-1",
        )

    await asyncio.gather(transport.send(message()), transport.send(message()))
    names = sorted(p.name for p in (tmp_path / "mailbox").iterdir())
    assert names == ["n-1.2.eml", "n-1.eml"]


async def test_the_inbox_migration_records_the_notifications_already_there(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(_config(MIGRATIONS, sync), "0002"))
        for n, (kind, status, attempts) in enumerate(
            [
                ("order_confirmed", "sent", 1),
                ("payment_failed", "failed", 3),
                ("order_cancelled", "queued", 0),
            ]
        ):
            await conn.execute(
                text(
                    "INSERT INTO notifications (id, event_id, type, order_id, customer_id, "
                    "channel, subject, body, status, attempts, created_at, sent_at) VALUES "
                    "(:id, :event, :type, 'o', 'c', 'email', 's', 'b', :status, :attempts, "
                    "'2025-05-01 12:00:00.000000+00:00', NULL)"
                ),
                {
                    "id": f"n-{n}",
                    "event": f"e-{n}",
                    "type": kind,
                    "status": status,
                    "attempts": attempts,
                },
            )
    await migrate(db, MIGRATIONS)
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT event_id, consumer, subject, status, deliveries, handled_at "
                    "IS NOT NULL FROM inbox ORDER BY event_id"
                )
            )
        ).all()
    await db.dispose()
    assert [tuple(r) for r in rows] == [
        ("e-0", "notification-orders", "order.confirmed", "handled", 1, 1),
        ("e-1", "notification-payments", "payment.declined", "handled", 3, 1),
        ("e-2", "notification-orders", "order.cancelled", "received", 1, 0),
    ]
