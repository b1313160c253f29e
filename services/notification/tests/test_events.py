"""Events in, emails out: real NATS JetStream, a real SMTP server, the app in-process."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import FastAPI
from shop_notification.app import create_app
from shopkit.settings import DEV_INTERNAL_TOKEN
from shopkit.testing import eventually

WAIT = 30.0
INTERNAL = {"X-Internal-Token": DEV_INTERNAL_TOKEN}


async def test_each_event_sends_one_email_to_the_customer(
    app: FastAPI, bus: Any, serving: Any, smtp: Any, users: Any, rows: Any
) -> None:
    customer = users.add("sam@example.com")
    order_id = str(uuid.uuid4())
    async with serving(app) as client:
        await bus.publish("order.confirmed", bus.confirmed(customer, order_id=order_id))
        await bus.publish(
            "order.cancelled",
            {
                "order_id": order_id,
                "customer_id": customer,
                "refunded": {"amount": 1250, "currency": "USD"},
            },
        )
        await bus.publish(
            "payment.declined",
            {
                "order_id": order_id,
                "customer_id": customer,
                "charge_id": str(uuid.uuid4()),
                "decline_code": "card-declined",
                "amount": {"amount": 1250, "currency": "USD"},
            },
        )
        assert await eventually(lambda: _async(len(smtp.received) >= 3), timeout=WAIT)

        ref = order_id[:8]
        subjects = sorted(str(r.message["Subject"]) for r in smtp.received)
        assert subjects == sorted(
            [
                f"Your Sweet Slice order #{ref} is confirmed",
                f"Your Sweet Slice order #{ref} has been cancelled",
                f"Payment for your Sweet Slice order #{ref} did not go through",
            ]
        )
        for received in smtp.received:
            assert received.recipients == ["sam@example.com"]
            assert received.message["To"] == "sam@example.com"
            assert received.message["From"] == "Sweet Slice <orders@sweetslice.local>"
        by_subject = {str(r.message["Subject"]): r.message for r in smtp.received}
        body = by_subject[f"Your Sweet Slice order #{ref} is confirmed"].get_content()
        assert "Total: $12.50" in body
        assert "2 x Sourdough Loaf" in body
        assert order_id in body

        stored = await rows()
        assert sorted(r.type for r in stored) == [
            "order_cancelled",
            "order_confirmed",
            "payment_failed",
        ]
        assert all(r.status == "sent" and r.attempts == 1 for r in stored)
        assert all(r.recipient == "sam@example.com" and r.sent_at is not None for r in stored)

        resp = await client.get("/internal/deliveries", headers=INTERNAL)
        assert resp.status_code == 200
        items = resp.json()["items"]
        assert {(i["type"], i["order_id"], i["status"], i["attempts"]) for i in items} == {
            ("order_confirmed", order_id, "sent", 1),
            ("order_cancelled", order_id, "sent", 1),
            ("payment_failed", order_id, "sent", 1),
        }


async def test_an_event_delivered_twice_gives_one_notification_and_one_email(
    app: FastAPI, bus: Any, serving: Any, smtp: Any, users: Any, rows: Any
) -> None:
    customer = users.add("twice@example.com")
    data = bus.confirmed(customer)
    event_id = str(uuid.uuid4())
    async with serving(app):
        # Different Nats-Msg-Ids defeat JetStream's duplicate window: both copies are delivered,
        # as after a publisher republished an event once the window had passed.
        await bus.publish("order.confirmed", data, event_id=event_id, msg_id="first")
        last = await bus.publish_raw(
            "order.confirmed",
            _envelope(event_id, "order.confirmed", data),
            msg_id="second",
        )
        assert await eventually(
            lambda: bus.settled("ORDERS", "notification-orders", through=last), timeout=WAIT
        )
        # Delivered once more, after the first copies were settled: still nothing new.
        again = await bus.publish_raw(
            "order.confirmed", _envelope(event_id, "order.confirmed", data), msg_id="third"
        )
        assert await eventually(
            lambda: bus.settled("ORDERS", "notification-orders", through=again), timeout=WAIT
        )
        assert len(smtp.to("twice@example.com")) == 1
        stored = await rows()
        assert [(r.event_id, r.status, r.attempts) for r in stored] == [(event_id, "sent", 1)]


async def test_an_event_arriving_while_smtp_is_down_is_sent_once_it_is_up(
    app: FastAPI, bus: Any, serving: Any, smtp: Any, users: Any, rows: Any
) -> None:
    customer = users.add("patient@example.com")
    await smtp.stop()
    async with serving(app) as client:
        event_id = await bus.publish("order.confirmed", bus.confirmed(customer))

        async def queued_after_a_failed_attempt() -> bool:
            stored = await rows()
            return len(stored) == 1 and stored[0].status == "queued" and stored[0].attempts >= 1

        assert await eventually(queued_after_a_failed_attempt, timeout=WAIT)
        # The customer already sees it, queued.
        await smtp.start()

        async def sent() -> bool:
            stored = await rows()
            return stored[0].status == "sent"

        assert await eventually(sent, timeout=WAIT)
        assert len(smtp.to("patient@example.com")) == 1
        resp = await client.get("/internal/deliveries", headers=INTERNAL)
        [delivery] = resp.json()["items"]
        assert delivery["event_id"] == event_id
        assert delivery["status"] == "sent"
        assert delivery["attempts"] >= 2


async def test_the_last_failed_attempt_marks_the_notification_failed(
    make_settings: Any, bus: Any, serving: Any, smtp: Any, users: Any
) -> None:
    customer = users.add("unlucky@example.com")
    await smtp.stop()
    app = create_app(make_settings(max_deliveries=2))
    async with serving(app) as client:
        last = await bus.publish_raw(
            "order.confirmed",
            _envelope(str(uuid.uuid4()), "order.confirmed", bus.confirmed(customer)),
            msg_id=str(uuid.uuid4()),
        )
        assert await eventually(
            lambda: bus.settled("ORDERS", "notification-orders", through=last), timeout=WAIT
        )
        resp = await client.get("/internal/deliveries", headers=INTERNAL)
        [delivery] = resp.json()["items"]
        assert (delivery["status"], delivery["attempts"]) == ("failed", 2)
    assert smtp.received == []


async def test_user_service_down_defers_the_email_until_it_answers(
    app: FastAPI, bus: Any, serving: Any, smtp: Any, users: Any, rows: Any
) -> None:
    customer = users.add("later@example.com")
    users.available = False
    async with serving(app):
        await bus.publish("order.confirmed", bus.confirmed(customer))

        async def looked_up_twice() -> bool:
            return users.lookups >= 2

        assert await eventually(looked_up_twice, timeout=WAIT)
        stored = await rows()
        assert [(r.status, r.attempts, r.recipient) for r in stored] == [("queued", 0, None)]
        assert smtp.received == []

        users.available = True
        assert await eventually(lambda: _async(len(smtp.received) == 1), timeout=WAIT)
        assert smtp.received[0].recipients == ["later@example.com"]
        assert await eventually(lambda: _sent(rows), timeout=WAIT)


async def test_an_unknown_customer_fails_the_notification_without_email(
    app: FastAPI, bus: Any, serving: Any, smtp: Any, rows: Any
) -> None:
    async with serving(app):
        last = await bus.publish_raw(
            "order.confirmed",
            _envelope(str(uuid.uuid4()), "order.confirmed", bus.confirmed(str(uuid.uuid4()))),
            msg_id=str(uuid.uuid4()),
        )
        assert await eventually(
            lambda: bus.settled("ORDERS", "notification-orders", through=last), timeout=WAIT
        )
        stored = await rows()
        assert [(r.status, r.attempts) for r in stored] == [("failed", 0)]
    assert smtp.received == []


async def test_subjects_without_a_notification_are_acked_without_a_row(
    app: FastAPI, bus: Any, serving: Any, smtp: Any, users: Any, rows: Any
) -> None:
    customer = users.add("quiet@example.com")
    async with serving(app):
        refunded = {
            "order_id": str(uuid.uuid4()),
            "customer_id": customer,
            "charge_id": str(uuid.uuid4()),
            "refund_id": str(uuid.uuid4()),
            "amount": {"amount": 500, "currency": "USD"},
        }
        payments_last = await bus.publish_raw(
            "payment.refunded",
            _envelope(str(uuid.uuid4()), "payment.refunded", refunded),
            msg_id=str(uuid.uuid4()),
        )
        orders_last = await bus.publish_raw(
            "order.shipped",
            _envelope(str(uuid.uuid4()), "order.shipped", {"order_id": "x"}),
            msg_id=str(uuid.uuid4()),
        )
        assert await eventually(
            lambda: bus.settled("PAYMENTS", "notification-payments", through=payments_last),
            timeout=WAIT,
        )
        assert await eventually(
            lambda: bus.settled("ORDERS", "notification-orders", through=orders_last),
            timeout=WAIT,
        )
        assert await rows() == []
    assert smtp.received == []
    assert users.lookups == 0


async def test_malformed_messages_are_dropped_and_the_consumer_goes_on(
    app: FastAPI, bus: Any, serving: Any, smtp: Any, users: Any, rows: Any
) -> None:
    customer = users.add("robust@example.com")
    async with serving(app):
        await bus.publish_raw("order.confirmed", b"{not json", msg_id=str(uuid.uuid4()))
        await bus.publish_raw("order.confirmed", b'["an", "array"]', msg_id=str(uuid.uuid4()))
        # A well-formed envelope whose data can never make a notification (no customer).
        await bus.publish("order.confirmed", {"order_id": str(uuid.uuid4())})
        # Ids that could smuggle headers into the email are refused as data errors too.
        await bus.publish("order.confirmed", bus.confirmed("bad\r\nBcc: x@evil.test"))
        good = bus.confirmed(customer)
        await bus.publish("order.confirmed", good)
        cancelled = {**good, "refunded": {"amount": 0, "currency": "USD"}}
        last = await bus.publish_raw(
            "order.cancelled",
            _envelope(str(uuid.uuid4()), "order.cancelled", cancelled),
            msg_id=str(uuid.uuid4()),
        )
        assert await eventually(
            lambda: bus.settled("ORDERS", "notification-orders", through=last), timeout=WAIT
        )
        assert len(smtp.received) == 2
        info = await bus.js.consumer_info("ORDERS", "notification-orders")
        # Nothing was redelivered: the broken messages were terminated at their first delivery.
        assert info.num_redelivered == 0
        consumers = [t for t in app.state.runtime.tasks if t.get_name().startswith("notif")]
        assert len(consumers) == 2
        assert not any(t.done() for t in consumers)
        stored = await rows()
        assert sorted(r.type for r in stored) == ["order_cancelled", "order_confirmed"]
        assert all(r.customer_id == customer for r in stored)


def _envelope(event_id: str, subject: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {"id": event_id, "type": subject, "occurred_at": "2025-05-01T12:00:00+00:00", "data": data}
    ).encode()


async def _async(value: bool) -> bool:
    return value


async def _sent(rows: Any) -> bool:
    stored = await rows()
    return bool(stored) and all(r.status == "sent" for r in stored)
