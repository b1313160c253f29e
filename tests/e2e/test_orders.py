"""Order history and cancellation: API.md's second Orders table."""

from __future__ import annotations

import httpx
from shopkit.testing import eventually

from tests.e2e.support import (
    Customer,
    RunningPlatform,
    assert_problem,
    available,
    charges_for,
    fill_cart,
    fresh_product,
    key,
    new_customer,
    order_body,
)


async def place(
    client: httpx.AsyncClient, customer: Customer, product_id: str, quantity: int = 1
) -> dict[str, object]:
    await fill_cart(client, customer, {product_id: quantity})
    resp = await client.post(
        "/api/v1/orders", json=order_body(), headers={**customer.headers, **key()}
    )
    assert resp.status_code == 201, resp.text
    order: dict[str, object] = resp.json()
    return order


async def test_history_is_newest_first_and_private(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    alice = await new_customer(client, "Alice")
    bob = await new_customer(client, "Bob")
    product = await fresh_product(client, admin_headers, available=20)
    placed = [await place(client, alice, product["id"]) for _ in range(3)]

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/orders", params=params, headers=alice.headers)).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [str(o["id"]) for o in reversed(placed)]

    assert (await client.get("/api/v1/orders", headers=bob.headers)).json()["items"] == []
    for order in placed:
        mine = await client.get(f"/api/v1/orders/{order['id']}", headers=alice.headers)
        assert mine.status_code == 200
        assert mine.json() == order | {"updated_at": mine.json()["updated_at"]}
        assert_problem(await client.get(f"/api/v1/orders/{order['id']}", headers=bob.headers), 404)
        assert_problem(await client.get(f"/api/v1/orders/{order['id']}"), 401)
        assert_problem(
            await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=bob.headers), 404
        )
    assert_problem(await client.get("/api/v1/orders"), 401)
    assert_problem(
        await client.get("/api/v1/orders", params={"cursor": "zzz"}, headers=alice.headers), 422
    )


async def test_cancel_refunds_and_restocks(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    customer = await new_customer(client)
    product = await fresh_product(client, admin_headers, available=6)
    order = await place(client, customer, product["id"], 4)
    assert await available(client, product["id"]) == 2

    resp = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled"
    assert await available(client, product["id"]) == 6
    (charge,) = await charges_for(internal, platform, str(order["id"]))
    assert charge["refunded"]["amount"] == charge["amount"]["amount"] == order["total"]["amount"]  # type: ignore[index]

    again = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert_problem(again, 409)
    (charge_after,) = await charges_for(internal, platform, str(order["id"]))
    assert charge_after["refunded"] == charge["refunded"]

    async def cancelled_noted() -> bool:
        resp = await client.get("/api/v1/notifications", headers=customer.headers)
        return any(
            n["type"] == "order_cancelled" and n["order_id"] == order["id"]
            for n in resp.json()["items"]
        )

    assert await eventually(cancelled_noted, timeout=5)


async def test_failed_orders_cannot_be_cancelled(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    customer = await new_customer(client)
    product = await fresh_product(client, admin_headers)
    await fill_cart(client, customer, {product["id"]: 1})
    resp = await client.post(
        "/api/v1/orders",
        json=order_body("tok_chargeDeclined"),
        headers={**customer.headers, **key()},
    )
    order_id = assert_problem(resp, 402)["order_id"]
    assert_problem(
        await client.post(f"/api/v1/orders/{order_id}/cancel", headers=customer.headers), 409
    )
    assert_problem(await client.post(f"/api/v1/orders/{order_id}/cancel"), 401)
