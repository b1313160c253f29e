"""Reading and cancelling orders, against the real peers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shopkit.http import INTERNAL_TOKEN_HEADER

if TYPE_CHECKING:
    from conftest import Customer, OrderApi, OrderFactory, Platform


async def buy(
    platform: Platform, orders: OrderApi, customer: Customer, *, price: int = 500, qty: int = 1
) -> tuple[dict[str, Any], str]:
    product = await platform.product(price=price, stock=10)
    await platform.put_in_cart(customer, product, qty)
    resp = await orders.place(customer)
    assert resp.status_code == 201, resp.text
    order: dict[str, Any] = resp.json()
    return order, product


async def test_cancel_refunds_restocks_and_publishes(platform: Platform, orders: OrderApi) -> None:
    customer = await platform.customer()
    order, product = await buy(platform, orders, customer, price=450, qty=3)
    assert await platform.available(product) == 7

    resp = await orders.client.post(
        f"/api/v1/orders/{order['id']}/cancel", headers=customer.headers
    )

    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled"
    assert resp.json()["id"] == order["id"]
    ledger = await platform.ledger()
    assert ledger["orders"][order["id"]] == {
        "charges": 1,
        "charged": 1350,
        "refunds": 1,
        "refunded": 1350,
    }
    assert await platform.available(product) == 10
    reservation = await platform.reservation(order["id"])
    assert reservation is not None
    assert reservation["status"] == "returned"
    cancelled = [e for e in await orders.outbox_rows() if e["subject"] == "order.cancelled"]
    assert len(cancelled) == 1
    data = json.loads(cancelled[0]["payload"])["data"]
    assert data == {
        "order_id": order["id"],
        "customer_id": customer.id,
        "refunded": {"amount": 1350, "currency": "USD"},
    }

    again = await orders.client.post(
        f"/api/v1/orders/{order['id']}/cancel", headers=customer.headers
    )
    assert again.status_code == 409, again.text
    assert again.json()["type"].endswith("not-cancellable")
    assert (await platform.ledger())["orders"][order["id"]]["refunds"] == 1
    got = await orders.client.get(f"/api/v1/orders/{order['id']}", headers=customer.headers)
    assert got.json()["status"] == "cancelled"


async def test_failed_order_is_not_cancellable(platform: Platform, orders: OrderApi) -> None:
    customer = await platform.customer()
    product = await platform.product(stock=5)
    await platform.put_in_cart(customer, product, 1)
    failed = await orders.place(customer, body=orders.body("tok_chargeDeclined"))
    assert failed.status_code == 402

    resp = await orders.client.post(
        f"/api/v1/orders/{failed.json()['order_id']}/cancel", headers=customer.headers
    )

    assert resp.status_code == 409
    assert resp.json()["type"].endswith("not-cancellable")


async def test_cancel_with_payment_down_is_503_and_keeps_the_order(
    platform: Platform, orders: OrderApi, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    order, product = await buy(platform, orders, customer)

    async with order_app(payment_url="http://127.0.0.1:9") as broken:
        resp = await broken.client.post(
            f"/api/v1/orders/{order['id']}/cancel", headers=customer.headers
        )
        assert resp.status_code == 503, resp.text
        assert "retry-after" in resp.headers
        got = await broken.client.get(f"/api/v1/orders/{order['id']}", headers=customer.headers)
        assert got.json()["status"] == "confirmed"
    assert (await platform.ledger())["refunded"] == 0
    assert await platform.available(product) == 9

    # the retry, once payment is back, finishes the job (keys make it safe)
    retry = await orders.client.post(
        f"/api/v1/orders/{order['id']}/cancel", headers=customer.headers
    )
    assert retry.status_code == 200, retry.text
    assert (await platform.ledger())["refunded"] == 500
    assert await platform.available(product) == 10


async def test_other_customers_orders_are_404(platform: Platform, orders: OrderApi) -> None:
    alice, mallory = await platform.customer(), await platform.customer()
    order, _ = await buy(platform, orders, alice)

    got = await orders.client.get(f"/api/v1/orders/{order['id']}", headers=mallory.headers)
    cancel = await orders.client.post(
        f"/api/v1/orders/{order['id']}/cancel", headers=mallory.headers
    )
    listing = await orders.client.get("/api/v1/orders", headers=mallory.headers)

    assert got.status_code == 404
    assert cancel.status_code == 404
    assert listing.json() == {"items": [], "next_cursor": None}
    assert (await platform.ledger())["refunded"] == 0
    unknown = await orders.client.get("/api/v1/orders/no-such-order", headers=alice.headers)
    assert unknown.status_code == 404


async def test_list_is_newest_first_and_paginated(platform: Platform, orders: OrderApi) -> None:
    customer = await platform.customer()
    placed = [(await buy(platform, orders, customer, price=100 + i))[0]["id"] for i in range(3)]

    first = await orders.client.get("/api/v1/orders?limit=2", headers=customer.headers)
    assert first.status_code == 200
    page = first.json()
    assert [o["id"] for o in page["items"]] == placed[::-1][:2]
    assert page["next_cursor"]
    second = await orders.client.get(
        "/api/v1/orders",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=customer.headers,
    )
    assert [o["id"] for o in second.json()["items"]] == [placed[0]]
    assert second.json()["next_cursor"] is None
    everything = await orders.client.get("/api/v1/orders", headers=customer.headers)
    assert [o["id"] for o in everything.json()["items"]] == placed[::-1]
    assert everything.json()["items"][0]["total"] == {"amount": 102, "currency": "USD"}


async def test_bad_list_parameters_are_422(platform: Platform, orders: OrderApi) -> None:
    customer = await platform.customer()
    for query in (
        "limit=0",
        "limit=101",
        "limit=1000000000000000000000",
        "cursor=nope",
        "cursor=e30",
    ):
        resp = await orders.client.get(f"/api/v1/orders?{query}", headers=customer.headers)
        assert resp.status_code == 422, (query, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")


async def test_audit_lists_every_order_for_peers_only(platform: Platform, orders: OrderApi) -> None:
    customer = await platform.customer()
    order, _ = await buy(platform, orders, customer, price=700)

    denied = await orders.client.get("/internal/orders/audit")
    resp = await orders.client.get(
        "/internal/orders/audit",
        headers={INTERNAL_TOKEN_HEADER: platform.internal[INTERNAL_TOKEN_HEADER]},
    )

    assert denied.status_code == 401
    assert resp.status_code == 200
    [item] = resp.json()["items"]
    assert item["id"] == order["id"]
    assert item["customer_id"] == customer.id
    assert item["status"] == "confirmed"
    assert item["total"] == {"amount": 700, "currency": "USD"}
    assert item["idempotency_key"]
