"""POST /api/v1/orders against the real user, product, cart and payment services."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING

import pytest
from shopkit.testing import eventually

if TYPE_CHECKING:
    from conftest import Customer, OrderApi, OrderFactory, Platform, ProxyFactory


async def stocked_cart(platform: Platform, customer: Customer) -> tuple[str, str]:
    """Two products (350 x 2 and 1000 x 1 = 1700 cents) in the customer's cart."""
    scone = await platform.product(price=350, stock=10, name="Cheddar Scone")
    cake = await platform.product(price=1000, stock=5, name="Lemon Drizzle")
    await platform.put_in_cart(customer, scone, 2)
    await platform.put_in_cart(customer, cake, 1)
    return scone, cake


async def test_success_confirms_charges_once_and_publishes(
    platform: Platform, orders: OrderApi
) -> None:
    customer = await platform.customer()
    scone, cake = await stocked_cart(platform, customer)

    resp = await orders.place(customer)

    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert order["status"] == "confirmed"
    assert order["total"] == {"amount": 1700, "currency": "USD"}
    lines = {i["product_id"]: i for i in order["items"]}
    assert lines[scone]["name"] == "Cheddar Scone"
    assert lines[scone]["quantity"] == 2
    assert lines[scone]["unit_price"] == {"amount": 350, "currency": "USD"}
    assert lines[cake]["quantity"] == 1
    # stock decremented and the reservation committed
    assert await platform.available(scone) == 8
    assert await platform.available(cake) == 4
    reservation = await platform.reservation(order["id"])
    assert reservation is not None
    assert reservation["status"] == "committed"
    # exactly one charge of the total
    ledger = await platform.ledger()
    assert ledger["orders"][order["id"]]["charges"] == 1
    assert ledger["orders"][order["id"]]["charged"] == 1700
    # the cart was emptied
    assert await platform.cart_lines(customer) == {}
    # the payment credential is not kept once the charge is done
    assert await orders.payment_token_of(order["id"]) == ""
    # the order.confirmed event is in the outbox and reaches the real broker
    events = await orders.outbox_rows()
    assert [e["subject"] for e in events] == ["order.confirmed"]
    envelope = json.loads(events[0]["payload"])
    assert envelope["data"]["order_id"] == order["id"]
    assert envelope["data"]["customer_id"] == customer.id
    assert envelope["data"]["total"] == {"amount": 1700, "currency": "USD"}
    assert len(envelope["data"]["items"]) == 2

    async def published() -> bool:
        return all(e["published_at"] is not None for e in await orders.outbox_rows())

    assert await eventually(published, timeout=10)
    # the saga left the order at its terminal step, with the answer stored for replays
    row = await orders.row(order["id"])
    assert (row.status, row.saga_step) == ("confirmed", "confirmed")
    assert row.response_status == 201
    got = await orders.client.get(f"/api/v1/orders/{order['id']}", headers=customer.headers)
    assert got.status_code == 200
    assert got.json()["status"] == "confirmed"


@pytest.mark.parametrize(
    ("token", "slug"),
    [
        ("tok_chargeDeclined", "card-declined"),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient-funds"),
    ],
)
async def test_declined_fails_the_order_and_releases_stock(
    platform: Platform, orders: OrderApi, token: str, slug: str
) -> None:
    customer = await platform.customer()
    scone, cake = await stocked_cart(platform, customer)

    resp = await orders.place(customer, body=orders.body(token))

    assert resp.status_code == 402, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["type"].endswith(slug)
    order_id = problem["order_id"]
    reservation = await platform.reservation(order_id)
    assert reservation is not None
    assert reservation["status"] == "released"
    assert await platform.available(scone) == 10
    assert await platform.available(cake) == 5
    ledger = await platform.ledger()
    assert ledger["charged"] == 0
    assert await platform.cart_lines(customer) == {scone: 2, cake: 1}
    row = await orders.row(order_id)
    assert (row.status, row.saga_step) == ("failed", "released")
    assert row.failure_code == slug
    assert await orders.outbox_rows() == []
    got = await orders.client.get(f"/api/v1/orders/{order_id}", headers=customer.headers)
    assert got.json()["status"] == "failed"
    assert got.json()["failure"]["code"] == slug


async def test_invalid_payment_token_is_422_and_releases(
    platform: Platform, orders: OrderApi
) -> None:
    customer = await platform.customer()
    scone, _ = await stocked_cart(platform, customer)

    resp = await orders.place(customer, body=orders.body("tok_unknown"))

    assert resp.status_code == 422, resp.text
    assert resp.json()["type"].endswith("invalid-payment-token")
    order_id = resp.json()["order_id"]
    reservation = await platform.reservation(order_id)
    assert reservation is not None
    assert reservation["status"] == "released"
    assert await platform.available(scone) == 10
    assert (await orders.row(order_id)).status == "failed"
    assert (await platform.ledger())["charged"] == 0


async def test_insufficient_stock_names_the_product_and_charges_nothing(
    platform: Platform, orders: OrderApi
) -> None:
    customer = await platform.customer()
    plenty = await platform.product(stock=10)
    scarce = await platform.product(stock=2, name="Last Croissants")
    await platform.put_in_cart(customer, plenty, 1)
    await platform.put_in_cart(customer, scarce, 3)

    resp = await orders.place(customer)

    assert resp.status_code == 409, resp.text
    problem = resp.json()
    assert problem["type"].endswith("insufficient-stock")
    assert [p["product_id"] for p in problem["products"]] == [scarce]
    assert "Last Croissants" in problem["detail"]
    # nothing reserved, nothing charged, cart kept
    assert await platform.available(plenty) == 10
    assert await platform.available(scarce) == 2
    reservation = await platform.reservation(problem["order_id"])
    assert reservation is None or reservation["status"] != "active"
    assert await platform.charges(problem["order_id"]) == []
    assert await platform.cart_lines(customer) == {plenty: 1, scarce: 3}
    row = await orders.row(problem["order_id"])
    assert (row.status, row.saga_step) == ("failed", "rejected")


async def test_empty_cart_is_400_and_creates_nothing(platform: Platform, orders: OrderApi) -> None:
    customer = await platform.customer()

    resp = await orders.place(customer)

    assert resp.status_code == 400, resp.text
    assert resp.json()["type"].endswith("cart-empty")
    assert await orders.rows() == []
    # nothing remembered either: the same key works once the cart has something in it
    assert (await platform.ledger())["charged"] == 0


@pytest.mark.parametrize("key", [None, "", "k" * 256, "caf\u00e9"])
async def test_missing_or_invalid_idempotency_key_is_400(
    platform: Platform, orders: OrderApi, key: str | None
) -> None:
    customer = await platform.customer()
    await stocked_cart(platform, customer)
    headers = dict(customer.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    resp = await orders.client.post(
        "/api/v1/orders",
        headers={k: v.encode() if k == "Idempotency-Key" else v for k, v in headers.items()},
        json=orders.body(),
    )

    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert await orders.rows() == []
    assert (await platform.ledger())["charged"] == 0


async def test_replay_returns_the_first_answer_and_charges_once(
    platform: Platform, orders: OrderApi
) -> None:
    customer = await platform.customer()
    await stocked_cart(platform, customer)
    key = uuid.uuid4().hex

    first = await orders.place(customer, key)
    # the cart is empty now: only a replay can still answer 201
    second = await orders.place(customer, key)

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert len(await orders.rows()) == 1
    ledger = await platform.ledger()
    assert ledger["orders"][first.json()["id"]]["charges"] == 1
    assert ledger["charged"] == 1700


async def test_replay_of_a_failure_returns_the_same_failure(
    platform: Platform, orders: OrderApi
) -> None:
    customer = await platform.customer()
    await stocked_cart(platform, customer)
    key = uuid.uuid4().hex
    body = orders.body("tok_chargeDeclined")

    first = await orders.place(customer, key, body)
    second = await orders.place(customer, key, body)

    assert first.status_code == second.status_code == 402
    assert second.json() == first.json()
    assert len(await orders.rows()) == 1
    assert len(await platform.charges(first.json()["order_id"])) == 1


async def test_same_key_other_body_is_422(platform: Platform, orders: OrderApi) -> None:
    customer = await platform.customer()
    await stocked_cart(platform, customer)
    key = uuid.uuid4().hex

    first = await orders.place(customer, key)
    other = await orders.place(customer, key, orders.body(city="Paris", country="FR"))

    assert first.status_code == 201
    assert other.status_code == 422, other.text
    assert other.json()["type"].endswith("idempotency-key-reused")
    assert len(await orders.rows()) == 1
    assert (await platform.ledger())["charged"] == 1700


async def test_same_key_from_another_customer_is_another_order(
    platform: Platform, orders: OrderApi
) -> None:
    alice, bob = await platform.customer(), await platform.customer()
    await stocked_cart(platform, alice)
    await stocked_cart(platform, bob)

    a = await orders.place(alice, "shared-key")
    b = await orders.place(bob, "shared-key")

    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


async def test_concurrent_requests_with_one_key_make_one_order(
    platform: Platform, orders: OrderApi
) -> None:
    customer = await platform.customer()
    scone, cake = await stocked_cart(platform, customer)
    key = uuid.uuid4().hex

    answers = await asyncio.gather(*(orders.place(customer, key) for _ in range(5)))

    rows = await orders.rows()
    assert len(rows) == 1
    order_id = rows[0].id
    statuses = sorted(a.status_code for a in answers)
    assert 201 in statuses
    assert set(statuses) <= {201, 409}
    for answer in answers:
        body = answer.json()
        assert body.get("id", body.get("order_id")) == order_id
        if answer.status_code == 409:
            assert body["type"].endswith("request-in-progress")
    # once the first completes, the key answers the first answer
    replay = await orders.place(customer, key)
    assert replay.status_code == 201
    assert replay.json()["id"] == order_id
    ledger = await platform.ledger()
    assert ledger["orders"][order_id]["charges"] == 1
    assert ledger["charged"] == 1700
    assert await platform.available(scone) == 8
    assert await platform.available(cake) == 4


async def test_payment_down_is_503_releases_and_charges_nothing(
    platform: Platform, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    scone, cake = await stocked_cart(platform, customer)
    dead = "http://127.0.0.1:9"  # discard port: nothing listens, connections are refused

    async with order_app(payment_url=dead) as orders:
        resp = await orders.place(customer, "pay-down")

        assert resp.status_code == 503, resp.text
        assert int(resp.headers["retry-after"]) >= 1
        problem = resp.json()
        assert problem["type"].endswith("payment-unavailable")
        order_id = problem["order_id"]
        reservation = await platform.reservation(order_id)
        assert reservation is not None
        assert reservation["status"] == "released"
        assert await platform.available(scone) == 10
        assert await platform.available(cake) == 5
        assert await platform.cart_lines(customer) == {scone: 2, cake: 1}
        row = await orders.row(order_id)
        # failed, but watched for a charge that might still land
        assert (row.status, row.saga_step) == ("failed", "charge-unknown")
        replay = await orders.place(customer, "pay-down")
        assert replay.status_code == 503
        assert replay.json() == problem
    assert await platform.charges(order_id) == []
    assert (await platform.ledger())["charged"] == 0


async def test_inventory_down_is_503_and_charges_nothing(
    platform: Platform, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    scone, _ = await stocked_cart(platform, customer)

    async with order_app(product_url="http://127.0.0.1:9") as orders:
        resp = await orders.place(customer)
        assert resp.status_code == 503, resp.text
        assert "retry-after" in resp.headers
        [row] = await orders.rows()
        # the reservation may or may not exist: the order waits for recovery to release it
        assert (row.status, row.saga_step) == ("pending", "reserving")
    assert (await platform.ledger())["charged"] == 0
    assert await platform.available(scone) == 10


async def test_cart_down_is_503_and_creates_nothing(
    platform: Platform, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    async with order_app(cart_url="http://127.0.0.1:9") as orders:
        resp = await orders.place(customer)
        assert resp.status_code == 503, resp.text
        assert "retry-after" in resp.headers
        assert await orders.rows() == []


async def test_unknown_customer_is_403_and_fails_the_order(
    platform: Platform, orders: OrderApi
) -> None:
    # A token the user service's own key signed, for an account it does not have (deleted
    # after the token was issued, say).
    ghost_id = str(uuid.uuid4())
    headers = await platform.token_for(ghost_id)

    resp = await orders.client.post(
        "/api/v1/orders", headers={**headers, "Idempotency-Key": "k1"}, json=orders.body()
    )

    assert resp.status_code == 403, resp.text
    problem = resp.json()
    assert problem["type"].endswith("customer-unknown")
    row = await orders.row(problem["order_id"])
    assert (row.customer_id, row.status, row.saga_step) == (ghost_id, "failed", "rejected")
    assert (await platform.ledger())["charged"] == 0


async def test_last_units_go_to_exactly_as_many_buyers(
    platform: Platform, orders: OrderApi
) -> None:
    scarce = await platform.product(price=900, stock=3, name="Last Cheesecakes")
    buyers = [await platform.customer() for _ in range(5)]
    for buyer in buyers:
        await platform.put_in_cart(buyer, scarce, 1)

    answers = await asyncio.gather(*(orders.place(b) for b in buyers))

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 201, 201, 409, 409]
    assert await platform.available(scarce) == 0
    ledger = await platform.ledger()
    assert ledger["charged"] == 3 * 900
    [audit] = [i for i in await platform.stock_audit() if i["product_id"] == scarce]
    assert audit["sold"] == 3
    assert audit["available"] == 0
    assert audit["stocked"] == audit["available"] + audit["reserved"] + audit["sold"]


async def test_payment_error_answers_are_retried_with_the_same_key(
    platform: Platform, order_app: OrderFactory, proxy: ProxyFactory
) -> None:
    customer = await platform.customer()
    await stocked_cart(platform, customer)
    async with proxy(platform.payment_url) as (url, faults):
        charges = 0

        def first_charge_fails(method: str, path: str) -> bool:
            nonlocal charges
            if method == "POST" and path == "/internal/charges":
                charges += 1
                return charges == 1
            return False

        faults.failing = first_charge_fails
        async with order_app(payment_url=url) as orders:
            resp = await orders.place(customer)
    assert resp.status_code == 201, resp.text
    assert [s for m, p, s in faults.seen if p == "/internal/charges"] == [503, 201]
    assert (await platform.ledger())["orders"][resp.json()["id"]]["charges"] == 1


async def test_commit_unreachable_after_charge_is_accepted_then_confirmed(
    platform: Platform, order_app: OrderFactory, proxy: ProxyFactory
) -> None:
    customer = await platform.customer()
    scone, _ = await stocked_cart(platform, customer)
    async with proxy(platform.product_url) as (url, faults):
        faults.failing = lambda method, path: path.endswith("/commit")
        settings = {"product_url": url, "saga_timeout_seconds": 1.0, "commit_attempts": 2}
        async with order_app(**settings) as orders:
            resp = await orders.place(customer, "money-taken")

            # the money was taken: not a failure, the order is accepted and finished later
            assert resp.status_code == 202, resp.text
            assert resp.json()["status"] == "pending"
            order_id = resp.json()["id"]
            busy = await orders.place(customer, "money-taken")
            assert busy.status_code == 409
            assert busy.json()["type"].endswith("request-in-progress")

            faults.failing = lambda method, path: False

            async def confirmed() -> bool:
                return (await orders.row(order_id)).status == "confirmed"

            assert await eventually(confirmed, timeout=10)
            replay = await orders.place(customer, "money-taken")
            assert replay.status_code == 201
            assert replay.json()["id"] == order_id
    assert await platform.available(scone) == 8
    assert (await platform.ledger())["orders"][order_id]["charges"] == 1
    assert await platform.cart_lines(customer) == {}
