"""Checkouts are counted by outcome and revenue by confirmed totals, on the order's /metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shopkit.metrics import CHECKOUT_OUTCOMES
from shopkit.testing import scraped

if TYPE_CHECKING:
    from conftest import OrderApi, Platform

CHECKOUTS = "shop_order_checkouts_total"
REVENUE = "shop_order_revenue_cents_total"
REFUNDED = "shop_order_refunded_cents_total"


async def _outcomes(orders: OrderApi) -> dict[str, float]:
    counts = {}
    for outcome in CHECKOUT_OUTCOMES:
        value = await scraped(orders.client, CHECKOUTS, outcome=outcome)
        assert value is not None, f"{outcome} is not exported"
        counts[outcome] = value
    return counts


async def _money(orders: OrderApi, name: str) -> float:
    value = await scraped(orders.client, name, currency="USD")
    assert value is not None, f"{name} is not exported"
    return value


async def test_checkout_outcomes_revenue_and_refunds(platform: Platform, orders: OrderApi) -> None:
    before = await _outcomes(orders)
    revenue = await _money(orders, REVENUE)
    refunded = await _money(orders, REFUNDED)

    buyer = await platform.customer()
    scone = await platform.product(price=350, stock=10)
    await platform.put_in_cart(buyer, scone, 2)
    confirmed = await orders.place(buyer, key="metrics-ok")
    assert confirmed.status_code == 201, confirmed.text
    # The same key again is a replay: no second checkout, no second revenue.
    replay = await orders.place(buyer, key="metrics-ok")
    assert replay.status_code == 201

    unlucky = await platform.customer()
    await platform.put_in_cart(unlucky, scone, 1)
    declined = await orders.place(unlucky, body=orders.body("tok_chargeDeclined"))
    assert declined.status_code == 402, declined.text

    greedy = await platform.customer()
    scarce = await platform.product(price=500, stock=1)
    await platform.put_in_cart(greedy, scarce, 1)
    await platform.put_in_cart(greedy, scone, 1)
    # Someone else takes the last one first.
    await platform.reserve("someone-else", [(scarce, 1)])
    short = await orders.place(greedy)
    assert short.status_code == 409, short.text

    empty = await orders.place(await platform.customer())
    assert empty.status_code == 400, empty.text

    after = await _outcomes(orders)
    moved = {k: after[k] - before[k] for k in CHECKOUT_OUTCOMES if after[k] != before[k]}
    assert moved == {"confirmed": 1, "replayed": 1, "declined": 1, "out-of-stock": 1, "rejected": 1}
    assert await _money(orders, REVENUE) == revenue + 700
    assert await _money(orders, REFUNDED) == refunded

    order_id = confirmed.json()["id"]
    cancelled = await orders.client.post(f"/api/v1/orders/{order_id}/cancel", headers=buyer.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert await _money(orders, REFUNDED) == refunded + 700
    assert await _money(orders, REVENUE) == revenue + 700
