"""Placing orders: every outcome row of API.md's Orders table, with what must be true afterwards."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from shopkit.testing import eventually

from tests.e2e.support import (
    RunningPlatform,
    SmtpSink,
    assert_problem,
    available,
    charges_for,
    fill_cart,
    fresh_product,
    key,
    metric,
    new_customer,
    order_body,
)


async def cart_items(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, object]]:
    items: list[dict[str, object]] = (await client.get("/api/v1/cart", headers=headers)).json()[
        "items"
    ]
    return items


async def test_successful_checkout(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
    smtp: SmtpSink,
) -> None:
    customer = await new_customer(client)
    a = await fresh_product(client, admin_headers, available=10, price=425)
    b = await fresh_product(client, admin_headers, available=3, price=1250)
    await fill_cart(client, customer, {a["id"]: 2, b["id"]: 1})

    resp = await client.post(
        "/api/v1/orders", json=order_body(), headers={**customer.headers, **key()}
    )
    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert order["status"] == "confirmed"
    assert order["total"] == {"amount": 2 * 425 + 1250, "currency": "USD"}
    assert {(i["product_id"], i["quantity"]) for i in order["items"]} == {
        (a["id"], 2),
        (b["id"], 1),
    }
    assert order["created_at"].endswith(("Z", "+00:00"))

    assert await available(client, a["id"]) == 8
    assert await available(client, b["id"]) == 2
    charges = await charges_for(internal, platform, order["id"])
    assert [(c["status"], c["amount"]["amount"]) for c in charges] == [("succeeded", 2100)]
    assert await eventually(lambda: _empty_cart(client, customer.headers), timeout=5)

    async def notified() -> list[dict[str, object]]:
        resp = await client.get("/api/v1/notifications", headers=customer.headers)
        return [n for n in resp.json()["items"] if n["order_id"] == order["id"]]

    notes = await eventually(notified, timeout=5)
    assert [n["type"] for n in notes] == ["order_confirmed"]
    assert notes[0]["channel"] == "email"
    mails = await eventually(lambda: _mails(smtp, customer.email), timeout=5)
    assert len(mails) == 1
    assert order["id"][:8] in str(mails[0]["Subject"]) + mails[0].get_payload()


async def _empty_cart(client: httpx.AsyncClient, headers: dict[str, str]) -> bool:
    return await cart_items(client, headers) == []


async def _mails(smtp: SmtpSink, address: str) -> list[object]:
    return list(smtp.to(address))


@pytest.mark.parametrize(
    ("token", "suffix"),
    [
        ("tok_chargeDeclined", "card-declined"),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient-funds"),
    ],
)
async def test_declined_card(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
    token: str,
    suffix: str,
) -> None:
    customer = await new_customer(client)
    product = await fresh_product(client, admin_headers, available=4)
    await fill_cart(client, customer, {product["id"]: 3})
    resp = await client.post(
        "/api/v1/orders", json=order_body(token), headers={**customer.headers, **key()}
    )
    problem = assert_problem(resp, 402, suffix)
    assert await available(client, product["id"]) == 4
    assert len(await cart_items(client, customer.headers)) == 1
    order_id = problem["order_id"]
    order = (await client.get(f"/api/v1/orders/{order_id}", headers=customer.headers)).json()
    assert order["status"] == "failed"
    charges = await charges_for(internal, platform, order_id)
    assert charges
    assert all(c["status"] == "declined" for c in charges)

    async def payment_failed_noted() -> bool:
        resp = await client.get("/api/v1/notifications", headers=customer.headers)
        return any(
            n["type"] == "payment_failed" and n["order_id"] == order_id
            for n in resp.json()["items"]
        )

    assert await eventually(payment_failed_noted, timeout=5)


async def test_not_enough_stock(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    customer = await new_customer(client)
    plenty = await fresh_product(client, admin_headers, available=10)
    scarce = await fresh_product(client, admin_headers, available=2)
    await fill_cart(client, customer, {plenty["id"]: 1, scarce["id"]: 2})
    # Someone else buys one of the two while the cart waits.
    await client.put(
        f"/api/v1/products/{scarce['id']}/stock", json={"available": 1}, headers=admin_headers
    )
    resp = await client.post(
        "/api/v1/orders", json=order_body(), headers={**customer.headers, **key()}
    )
    problem = assert_problem(resp, 409)
    assert scarce["id"] in str(problem)
    assert plenty["id"] not in str(problem.get("products", ""))
    assert await available(client, plenty["id"]) == 10
    assert await available(client, scarce["id"]) == 1
    assert len(await cart_items(client, customer.headers)) == 2
    assert await charges_for(internal, platform, problem["order_id"]) == []


async def test_empty_cart_creates_nothing(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client)
    resp = await client.post(
        "/api/v1/orders", json=order_body(), headers={**customer.headers, **key()}
    )
    assert_problem(resp, 400)
    orders = (await client.get("/api/v1/orders", headers=customer.headers)).json()["items"]
    assert orders == []


async def test_idempotency_key_is_required_and_checked(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    customer = await new_customer(client)
    product = await fresh_product(client, admin_headers)
    await fill_cart(client, customer, {product["id"]: 1})
    h = customer.headers
    assert_problem(await client.post("/api/v1/orders", json=order_body(), headers=h), 400)
    for bad in ("", "x" * 256, "bad\tkey"):
        resp = await client.post(
            "/api/v1/orders", json=order_body(), headers={**h, "Idempotency-Key": bad}
        )
        assert_problem(resp, 400)
    assert (await client.get("/api/v1/orders", headers=h)).json()["items"] == []
    assert await available(client, product["id"]) == 10


async def test_replay_returns_the_first_answer(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    customer = await new_customer(client)
    product = await fresh_product(client, admin_headers)
    await fill_cart(client, customer, {product["id"]: 2})
    headers = {**customer.headers, **key()}
    first = await client.post("/api/v1/orders", json=order_body(), headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post("/api/v1/orders", json=order_body(), headers=headers)
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "confirmed"
    assert len(await charges_for(internal, platform, first.json()["id"])) == 1
    assert await available(client, product["id"]) == 8

    other = await client.post("/api/v1/orders", json=order_body("tok_mastercard"), headers=headers)
    assert_problem(other, 422)
    orders = (await client.get("/api/v1/orders", headers=customer.headers)).json()["items"]
    assert [o["id"] for o in orders] == [first.json()["id"]]


async def test_replay_of_a_failure_is_the_same_failure(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    customer = await new_customer(client)
    product = await fresh_product(client, admin_headers)
    await fill_cart(client, customer, {product["id"]: 1})
    headers = {**customer.headers, **key()}
    first = await client.post(
        "/api/v1/orders", json=order_body("tok_chargeDeclined"), headers=headers
    )
    again = await client.post(
        "/api/v1/orders", json=order_body("tok_chargeDeclined"), headers=headers
    )
    assert first.status_code == again.status_code == 402
    assert first.json() == again.json()


async def test_same_key_in_flight_gives_one_order(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    customer = await new_customer(client)
    product = await fresh_product(client, admin_headers)
    await fill_cart(client, customer, {product["id"]: 1})
    headers = {**customer.headers, **key()}
    answers = await asyncio.gather(
        *(client.post("/api/v1/orders", json=order_body(), headers=headers) for _ in range(8))
    )
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {201, 409}, statuses
    assert 201 in statuses
    ids = {r.json()["id"] for r in answers if r.status_code == 201}
    assert len(ids) == 1
    (order_id,) = ids
    assert len(await charges_for(internal, platform, order_id)) == 1
    assert await available(client, product["id"]) == 9
    final = await client.post("/api/v1/orders", json=order_body(), headers=headers)
    assert final.status_code == 201
    assert final.json()["id"] == order_id


async def test_payment_down_is_503_and_leaves_no_trace(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    customer = await new_customer(client)
    product = await fresh_product(client, admin_headers, available=5)
    await fill_cart(client, customer, {product["id"]: 2})
    with platform.down("payment"):
        resp = await client.post(
            "/api/v1/orders", json=order_body(), headers={**customer.headers, **key()}
        )
        assert_problem(resp, 503)
        assert int(resp.headers["retry-after"]) >= 1
        assert await available(client, product["id"]) == 5
        assert len(await cart_items(client, customer.headers)) == 1
        # Browsing keeps working while payment is down.
        assert (await client.get("/api/v1/products")).status_code == 200
    # Once payment is back, the record shows a failed order and no charge for it.
    (order,) = (await client.get("/api/v1/orders", headers=customer.headers)).json()["items"]
    assert order["status"] == "failed"
    assert await charges_for(internal, platform, order["id"]) == []


async def test_checkout_fails_fast_while_payments_breaker_is_open(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    customer = await new_customer(client)
    product = await fresh_product(client, admin_headers, available=50)
    await fill_cart(client, customer, {product["id"]: 1})
    order = platform.url("order")
    breaker = {"service": "order", "peer": "payment"}
    short_circuited = {**breaker, "outcome": "short-circuited"}
    with platform.down("payment"):
        # Failures fill the breaker's window until it opens (at most a window's worth).
        for _ in range(20):
            if await metric(internal, order, "shop_peer_breaker_state", breaker) == 1:
                break
            resp = await client.post(
                "/api/v1/orders", json=order_body(), headers={**customer.headers, **key()}
            )
            assert_problem(resp, 503)
        assert await metric(internal, order, "shop_peer_breaker_state", breaker) == 1
        before = await metric(internal, order, "shop_peer_calls_total", short_circuited)
        orders_before = await client.get("/api/v1/orders", headers=customer.headers)
        resp = await client.post(
            "/api/v1/orders", json=order_body(), headers={**customer.headers, **key()}
        )
        # Answered by the breaker before anything was done: no order, nothing reserved.
        assert_problem(resp, 503)
        assert resp.json()["type"].endswith("/payment-unavailable")
        assert int(resp.headers["retry-after"]) >= 1
        assert await metric(internal, order, "shop_peer_calls_total", short_circuited) > before
        orders_after = await client.get("/api/v1/orders", headers=customer.headers)
        assert orders_after.json()["items"] == orders_before.json()["items"]
        assert await available(client, product["id"]) == 50
    # Once payment is back and the open period is over, checkout works again.
    resp = await client.post(
        "/api/v1/orders", json=order_body(), headers={**customer.headers, **key()}
    )
    assert resp.status_code == 201, resp.text
    assert await metric(internal, order, "shop_peer_breaker_state", breaker) == 0


async def test_order_input_is_validated(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    customer = await new_customer(client)
    product = await fresh_product(client, admin_headers)
    await fill_cart(client, customer, {product["id"]: 1})
    base = order_body()
    bad_bodies = [
        {**base, "payment_token": "tok_unknown"},
        {**base, "shipping_address": {**base["shipping_address"], "country": "Narnia"}},
        {**base, "shipping_address": {}},
        {"payment_token": "tok_visa"},
        {**base, "total": {"amount": 1, "currency": "USD"}},
        {**base, "status": "confirmed"},
    ]
    for body in bad_bodies:
        resp = await client.post("/api/v1/orders", json=body, headers={**customer.headers, **key()})
        assert_problem(resp, 422)
    assert await available(client, product["id"]) == 10
    assert_problem(await client.post("/api/v1/orders", json=base, headers=key()), 401)


async def test_unknown_order_is_404(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client)
    resp = await client.get(f"/api/v1/orders/{uuid.uuid4()}", headers=customer.headers)
    assert_problem(resp, 404)
