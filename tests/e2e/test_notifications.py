"""Notifications: one per event however often delivered; orders go through without them."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
from shopkit.testing import eventually

from tests.e2e.support import (
    RunningPlatform,
    SmtpSink,
    assert_problem,
    fill_cart,
    fresh_product,
    key,
    new_customer,
    order_body,
)


async def test_orders_confirm_while_notification_is_down_and_mail_follows(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
    smtp: SmtpSink,
) -> None:
    customer = await new_customer(client)
    product = await fresh_product(client, admin_headers)
    order_ids = []
    with platform.down("notification"):
        for _ in range(3):
            await fill_cart(client, customer, {product["id"]: 1})
            resp = await client.post(
                "/api/v1/orders", json=order_body(), headers={**customer.headers, **key()}
            )
            assert resp.status_code == 201, resp.text
            order_ids.append(resp.json()["id"])
        assert smtp.to(customer.email) == []

    async def all_mailed() -> bool:
        return len(smtp.to(customer.email)) >= 3

    assert await eventually(all_mailed, timeout=15)
    await asyncio.sleep(1)  # room for a duplicate to show up, if there were one
    mails = smtp.to(customer.email)
    assert len(mails) == 3

    async def all_recorded_sent() -> list[dict[str, str]]:
        resp = await client.get("/api/v1/notifications", headers=customer.headers)
        items: list[dict[str, str]] = resp.json()["items"]
        return items if all(n["status"] == "sent" for n in items) else []

    notes = await eventually(all_recorded_sent, timeout=10)
    assert Counter(n["order_id"] for n in notes) == Counter(order_ids)

    deliveries = (await internal.get(platform.url("notification") + "/internal/deliveries")).json()
    events = Counter(d["event_id"] for d in deliveries["items"])
    assert max(events.values()) == 1


async def test_notification_list_is_private_and_paged(client: httpx.AsyncClient) -> None:
    stranger = await new_customer(client)
    resp = await client.get("/api/v1/notifications", headers=stranger.headers)
    assert resp.status_code == 200
    assert resp.json() == {"items": [], "next_cursor": None}
    assert_problem(await client.get("/api/v1/notifications"), 401)
    assert_problem(
        await client.get("/api/v1/notifications", params={"limit": 0}, headers=stranger.headers),
        422,
    )
