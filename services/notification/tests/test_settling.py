"""Every event's notification gets settled, and no send holds the database while it runs.

Real NATS JetStream and a real SMTP server (a slow one where it matters), the app in-process.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from shop_notification import service
from shop_notification.app import create_app
from shop_notification.errors import DeliveryDeferred
from shop_notification.events import NotificationHandler
from shop_notification.mail import MailError, create_transport
from shop_notification.models import Notification
from shop_notification.settings import NotificationSettings
from shopkit.db import Database
from shopkit.messaging import Event
from shopkit.resilience import ResiliencePolicy
from shopkit.settings import DEV_INTERNAL_TOKEN
from shopkit.testing import eventually
from sqlalchemy import select

WAIT = 30.0
INTERNAL = {"X-Internal-Token": DEV_INTERNAL_TOKEN}

# The lookups are counted to count deliveries: no retries inside one delivery.
ONE_LOOKUP_PER_DELIVERY = ResiliencePolicy(retries=0)


async def test_user_service_down_through_the_last_delivery_fails_the_notification(
    make_settings: Any, bus: Any, serving: Any, smtp: Any, users: Any
) -> None:
    customer = users.add("nobody-home@example.com")
    users.available = False
    app = create_app(make_settings(max_deliveries=3, resilience=ONE_LOOKUP_PER_DELIVERY))
    async with serving(app) as client:
        last = await _publish(bus, "order.confirmed", bus.confirmed(customer))
        assert await eventually(
            lambda: bus.settled("ORDERS", "notification-orders", through=last), timeout=WAIT
        )
        [row] = await _rows(app)
        assert (row.status, row.attempts, row.claimed_at) == ("failed", 0, None)
        assert row.last_error is not None and "503" in row.last_error
        resp = await client.get("/internal/deliveries", headers=INTERNAL)
        assert [(d["status"], d["attempts"]) for d in resp.json()["items"]] == [("failed", 0)]
        assert users.lookups == 3
        # Settled on the last delivery: the event does not come back (the first redeliveries
        # came within a second).
        await asyncio.sleep(2.0)
        assert users.lookups == 3
    assert smtp.received == []


async def test_a_send_failing_on_the_last_delivery_fails_before_the_attempts_run_out(
    make_settings: Any, bus: Any, serving: Any, smtp: Any, users: Any
) -> None:
    customer = users.add("late-relay@example.com")
    # Two deliveries spent on the user service, the third (last) on a relay that is down.
    users.unavailable_for = 2
    await smtp.stop()
    app = create_app(make_settings(max_deliveries=3, resilience=ONE_LOOKUP_PER_DELIVERY))
    async with serving(app):
        last = await _publish(bus, "order.confirmed", bus.confirmed(customer))
        assert await eventually(
            lambda: bus.settled("ORDERS", "notification-orders", through=last), timeout=WAIT
        )
        [row] = await _rows(app)
        assert (row.status, row.attempts, row.claimed_at) == ("failed", 1, None)
        assert row.recipient == "late-relay@example.com"
        assert row.last_error is not None and "SMTP" in row.last_error
        assert users.lookups == 3


async def test_a_slow_send_does_not_hold_up_the_other_consumer(
    make_settings: Any, bus: Any, serving: Any, smtp: Any, users: Any
) -> None:
    slow = users.add("slow@example.com")
    quick = users.add("quick@example.com")
    # Longer than SQLite's busy_timeout (5 s): a send inside a write transaction would make
    # the other consumer's handler fail with "database is locked".
    smtp.slow["slow@example.com"] = 7.0
    app = create_app(make_settings(smtp_timeout_seconds=20))
    async with serving(app) as client:
        await _publish(bus, "order.confirmed", bus.confirmed(slow))

        async def slow_send_under_way() -> bool:
            return "slow@example.com" in smtp.data_started

        assert await eventually(slow_send_under_way, timeout=WAIT)
        order_id = str(uuid.uuid4())
        await _publish(
            bus,
            "payment.declined",
            {
                "order_id": order_id,
                "customer_id": quick,
                "charge_id": str(uuid.uuid4()),
                "decline_code": "card-declined",
                "amount": {"amount": 900, "currency": "USD"},
            },
        )

        async def quick_sent() -> bool:
            return bool(smtp.to("quick@example.com"))

        assert await eventually(quick_sent, timeout=WAIT)
        # The first email is still being accepted when the second is already delivered.
        assert smtp.to("slow@example.com") == []

        async def quick_recorded() -> bool:
            [mine] = [r for r in await _rows(app) if r.order_id == order_id]
            return mine.status == "sent"

        assert await eventually(quick_recorded, timeout=WAIT)
        resp = await client.get("/internal/deliveries", headers=INTERNAL)
        assert resp.status_code == 200
        states = {(d["type"], d["status"], d["attempts"]) for d in resp.json()["items"]}
        # The slow one is claimed ('sending'), which readers see as queued.
        assert states == {("order_confirmed", "queued", 1), ("payment_failed", "sent", 1)}
        # The quick event went through on its first delivery: nothing failed and came back.
        info = await bus.js.consumer_info("PAYMENTS", "notification-payments")
        assert info.delivered.consumer_seq == 1

        async def all_sent() -> bool:
            stored = await _rows(app)
            return len(stored) == 2 and all(r.status == "sent" for r in stored)

        assert await eventually(all_sent, timeout=WAIT)
        assert [r.attempts for r in await _rows(app)] == [1, 1]
    assert len(smtp.to("slow@example.com")) == 1
    assert len(smtp.to("quick@example.com")) == 1


async def test_a_fresh_claim_blocks_a_second_send_and_a_stale_one_is_taken_over(
    app: FastAPI, serving: Any
) -> None:
    async with serving(app):
        db: Database = app.state.db
        notification_id = await _record(db, _event("order.confirmed", _confirmed("c-1")))

        first = await _claim(db, notification_id, claim_timeout=60)
        assert isinstance(first, service.Claim) and first.attempt == 1
        assert await _claim(db, notification_id, claim_timeout=60) is service.Outcome.BUSY
        [row] = await _rows(app)
        assert (row.status, row.attempts, row.recipient) == ("sending", 1, "c@example.com")
        assert row.claimed_at is not None

        # Its sender presumed dead once the claim is older than the timeout.
        await asyncio.sleep(0.3)
        second = await _claim(db, notification_id, claim_timeout=0.2)
        assert isinstance(second, service.Claim) and second.attempt == 2

        # The first sender coming back late with a failure no longer owns the row.
        async with db.session() as session:
            late = await service.finish_send(
                first, MailError("late"), max_attempts=10, last_delivery=False, session=session
            )
        assert late is service.Outcome.DONE_BEFORE
        [row] = await _rows(app)
        assert (row.status, row.attempts, row.last_error) == ("sending", 2, None)

        async with db.session() as session:
            done = await service.finish_send(
                second, None, max_attempts=10, last_delivery=False, session=session
            )
        assert done is service.Outcome.SENT
        [row] = await _rows(app)
        assert (row.status, row.attempts, row.claimed_at) == ("sent", 2, None)
        assert row.sent_at is not None
        assert await _claim(db, notification_id, claim_timeout=0.0) is service.Outcome.DONE_BEFORE


async def test_two_deliveries_of_one_event_at_once_send_one_email(
    make_settings: Any, serving: Any, smtp: Any, users: Any
) -> None:
    customer = users.add("once@example.com")
    smtp.slow["once@example.com"] = 1.5
    settings = make_settings(smtp_timeout_seconds=10)
    app = create_app(settings)
    async with serving(app):
        handler = NotificationHandler(app.state.runtime, settings, create_transport(settings))
        event = _event("order.confirmed", _confirmed(customer))
        outcomes = await asyncio.gather(handler(event), handler(event), return_exceptions=True)
        # One sent it; the other found a fresh claim and asks for the event to come back.
        assert sum(o is None for o in outcomes) == 1
        assert sum(isinstance(o, DeliveryDeferred) for o in outcomes) == 1
        assert len(smtp.to("once@example.com")) == 1
        # The redelivery finds it sent, and sends nothing.
        await handler(Event(**{**event.__dict__, "delivery": 2}))
        assert len(smtp.to("once@example.com")) == 1
        [row] = await _rows(app)
        assert (row.status, row.attempts) == ("sent", 1)


async def test_a_last_delivery_meeting_a_fresh_claim_fails_it_unless_the_send_succeeds(
    make_settings: Any, serving: Any, smtp: Any, users: Any
) -> None:
    customer = users.add("contested@example.com")
    smtp.slow["contested@example.com"] = 1.5
    settings = make_settings(smtp_timeout_seconds=10)
    app = create_app(settings)
    async with serving(app):
        handler = NotificationHandler(app.state.runtime, settings, create_transport(settings))
        event = _event("order.confirmed", _confirmed(customer))
        sending = asyncio.create_task(handler(event))

        async def under_way() -> bool:
            return "contested@example.com" in smtp.data_started

        assert await eventually(under_way, timeout=WAIT)
        # The last delivery cannot send it (claimed) and settles it rather than raising.
        await handler(Event(**{**event.__dict__, "delivery": 3, "last_delivery": True}))
        [row] = await _rows(app)
        assert row.status == "failed"
        assert row.last_error is not None and "another delivery" in row.last_error
        # The send under way went through after all: that is what the row says in the end.
        await sending
        [row] = await _rows(app)
        assert (row.status, row.attempts) == ("sent", 1)
        assert len(smtp.to("contested@example.com")) == 1


async def test_the_claim_timeout_must_outlast_an_smtp_send() -> None:
    with pytest.raises(ValueError, match="claim_timeout_seconds"):
        NotificationSettings(smtp_timeout_seconds=30, claim_timeout_seconds=30)


async def _publish(bus: Any, subject: str, data: dict[str, Any]) -> int:
    event_id = str(uuid.uuid4())
    envelope = {
        "id": event_id,
        "type": subject,
        "occurred_at": "2025-05-01T12:00:00+00:00",
        "data": data,
    }
    seq: int = await bus.publish_raw(subject, json.dumps(envelope).encode(), msg_id=event_id)
    return seq


def _event(subject: str, data: dict[str, Any]) -> Event:
    return Event(
        id=str(uuid.uuid4()), type=subject, occurred_at="2025-05-01T12:00:00+00:00", data=data
    )


def _confirmed(customer_id: str) -> dict[str, Any]:
    return {
        "order_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "total": {"amount": 1250, "currency": "USD"},
        "items": [{"name": "Sourdough Loaf", "quantity": 2}],
    }


async def _record(db: Database, event: Event) -> str:
    async with db.session() as session:
        row = await service.record_event(event, session=session)
        assert row is not None
        return row.id


async def _claim(
    db: Database, notification_id: str, *, claim_timeout: float
) -> service.Claim | service.Outcome:
    async with db.session() as session:
        return await service.claim(
            notification_id,
            recipient="c@example.com",
            claim_timeout=claim_timeout,
            session=session,
        )


async def _rows(app: FastAPI) -> list[Notification]:
    db: Database = app.state.db
    async with db.session(read_only=True) as session:
        result = await session.execute(
            select(Notification).order_by(Notification.created_at, Notification.id)
        )
        return list(result.scalars().all())
