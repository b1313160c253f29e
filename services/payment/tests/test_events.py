"""Events reach a real NATS JetStream server through the outbox."""

from __future__ import annotations

import json
from typing import Any

import nats
from shop_payment.models import outbox
from shopkit.testing import eventually
from sqlalchemy import func, select

EXPECTED_TIMEOUT = 10


async def test_declined_and_refunded_events_are_published(api: Any, nats_url: str) -> None:
    declined = await api.charge(token="tok_chargeDeclined", amount=1500, order_id="order-ev")
    charge = await api.charge(amount=4000, order_id="order-ev")
    refund_resp = await api.client.post(
        "/internal/refunds", json=api.refund_body(charge["id"], 1000)
    )
    assert refund_resp.status_code == 201
    refund = refund_resp.json()

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        # The server is shared by the whole session: skip other tests' events.
        sub = await js.subscribe("payment.>", ordered_consumer=True)
        received: dict[str, Any] = {}
        while len(received) < 2:
            msg = await sub.next_msg(timeout=EXPECTED_TIMEOUT)
            envelope = json.loads(msg.data)
            if envelope["data"].get("order_id") != "order-ev":
                continue
            assert msg.headers is not None
            assert msg.headers["Nats-Msg-Id"] == envelope["id"]
            assert envelope["type"] == msg.subject
            received[msg.subject] = envelope
    finally:
        await nc.close()

    async def all_marked_published() -> bool:
        async with api.app.state.db.session() as session:
            pending = await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            )
        return pending == 0

    assert await eventually(all_marked_published)
    assert await api.rows("outbox") == 2
    assert received["payment.declined"]["data"] == {
        "order_id": "order-ev",
        "customer_id": declined["customer_id"],
        "charge_id": declined["id"],
        "decline_code": "card-declined",
        "amount": {"amount": 1500, "currency": "USD"},
    }
    assert received["payment.refunded"]["data"] == {
        "order_id": "order-ev",
        "customer_id": charge["customer_id"],
        "charge_id": charge["id"],
        "refund_id": refund["id"],
        "amount": {"amount": 1000, "currency": "USD"},
    }
