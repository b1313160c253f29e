"""Notification deliveries are counted by outcome on the service's /metrics."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from shop_notification.app import create_app
from shopkit.testing import eventually, scraped

DELIVERIES = "shop_notification_deliveries_total"
WAIT = 30.0


async def _counts(client: Any) -> dict[str, float]:
    counts = {}
    for outcome in ("sent", "retried", "failed"):
        value = await scraped(client, DELIVERIES, outcome=outcome)
        assert value is not None, f"{outcome} is not exported"
        counts[outcome] = value
    return counts


async def test_sent_and_failed_deliveries_are_counted(
    app: FastAPI, bus: Any, serving: Any, smtp: Any, users: Any
) -> None:
    customer = users.add("counted@example.com")
    async with serving(app) as client:
        before = await _counts(client)
        await bus.publish("order.confirmed", bus.confirmed(customer))
        await bus.publish("order.confirmed", bus.confirmed(customer))
        # No such account: given up at once, without an email.
        await bus.publish("order.confirmed", bus.confirmed(str(uuid.uuid4())))

        async def counted() -> bool:
            now = await _counts(client)
            return now["sent"] == before["sent"] + 2 and now["failed"] == before["failed"] + 1

        assert await eventually(counted, timeout=WAIT), await _counts(client)
        assert len(smtp.received) == 2
        assert (await _counts(client))["retried"] == before["retried"]


async def test_a_refused_send_counts_a_retry_then_a_failure(
    make_settings: Any, bus: Any, serving: Any, smtp: Any, users: Any
) -> None:
    customer = users.add("unlucky@example.com")
    await smtp.stop()
    app = create_app(make_settings(max_deliveries=2))
    async with serving(app) as client:
        before = await _counts(client)
        await bus.publish("order.confirmed", bus.confirmed(customer))

        async def counted() -> bool:
            now = await _counts(client)
            return now["retried"] == before["retried"] + 1 and now["failed"] == before["failed"] + 1

        assert await eventually(counted, timeout=WAIT), await _counts(client)
        assert (await _counts(client))["sent"] == before["sent"]
