"""Reservations: reserve, commit, release, restock, idempotency and the status rules."""

from __future__ import annotations

import pytest

PROBLEM = "application/problem+json"


async def _two_products(shop):
    bagel = await shop.create_product(sku="BAGEL", name="Bagel", available=10)
    pie = await shop.create_product(
        sku="PIE", name="Apple Pie", available=3, price={"amount": 2800, "currency": "USD"}
    )
    return bagel, pie


async def _status(shop, order_id):
    rows = await shop.rows("SELECT status FROM reservations WHERE order_id = :o", o=order_id)
    return rows[0]["status"] if rows else None


async def test_reserve_holds_units_and_captures_prices(shop):
    bagel, pie = await _two_products(shop)
    resp = await shop.reserve("order-1", [(bagel["id"], 2), (pie["id"], 1)])
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["order_id"] == "order-1"
    assert body["status"] == "active"
    assert body["expires_at"].endswith("Z")
    items = {item["product_id"]: item for item in body["items"]}
    assert items[bagel["id"]] == {
        "product_id": bagel["id"],
        "name": "Bagel",
        "quantity": 2,
        "unit_price": {"amount": 250, "currency": "USD"},
    }
    assert items[pie["id"]]["unit_price"] == {"amount": 2800, "currency": "USD"}
    assert await shop.available(bagel["id"]) == 8
    assert await shop.available(pie["id"]) == 2
    # A later price change does not reprice the reservation.
    await shop.client.patch(
        f"/api/v1/products/{pie['id']}",
        json={"price": {"amount": 9999, "currency": "USD"}, "name": "Pricey Pie"},
        headers=shop.admin,
    )
    got = await shop.client.get("/internal/reservations/order-1", headers=shop.internal)
    assert got.status_code == 200
    assert got.json() == body
    await shop.assert_conserved()


async def test_duplicate_product_lines_are_merged(shop):
    bagel, _ = await _two_products(shop)
    resp = await shop.reserve("order-1", [(bagel["id"], 2), (bagel["id"], 3)])
    assert resp.status_code == 201
    assert [(i["product_id"], i["quantity"]) for i in resp.json()["items"]] == [(bagel["id"], 5)]
    assert await shop.available(bagel["id"]) == 5
    # The same request in merged form is the same reservation.
    again = await shop.reserve("order-1", [(bagel["id"], 5)])
    assert again.status_code == 200
    assert await shop.available(bagel["id"]) == 5


async def test_replay_with_same_items_returns_existing(shop):
    bagel, pie = await _two_products(shop)
    first = await shop.reserve("order-1", [(bagel["id"], 2), (pie["id"], 1)])
    assert first.status_code == 201
    replay = await shop.reserve("order-1", [(pie["id"], 1), (bagel["id"], 2)])
    assert replay.status_code == 200
    assert replay.json() == first.json()
    assert await shop.available(bagel["id"]) == 8
    rows = await shop.rows("SELECT reserved FROM products WHERE id = :i", i=bagel["id"])
    assert rows == [{"reserved": 2}]


async def test_same_order_other_items_is_mismatch(shop):
    bagel, pie = await _two_products(shop)
    assert (await shop.reserve("order-1", [(bagel["id"], 2)])).status_code == 201
    for items in ([(bagel["id"], 3)], [(bagel["id"], 2), (pie["id"], 1)], [(pie["id"], 2)]):
        resp = await shop.reserve("order-1", items)
        assert resp.status_code == 409
        assert resp.json()["type"].endswith("/reservation-mismatch")
    assert await shop.available(bagel["id"]) == 8
    assert await shop.available(pie["id"]) == 3
    await shop.assert_conserved()


async def test_insufficient_stock_names_every_short_product_and_reserves_nothing(shop):
    bagel, pie = await _two_products(shop)
    cookie = await shop.create_product(sku="COOKIE", name="Cookie", available=1)
    resp = await shop.reserve("order-1", [(bagel["id"], 2), (pie["id"], 4), (cookie["id"], 2)])
    assert resp.status_code == 409
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["type"].endswith("/insufficient-stock")
    short = sorted(body["products"], key=lambda p: p["name"])
    assert short == [
        {"product_id": pie["id"], "name": "Apple Pie", "requested": 4, "available": 3},
        {"product_id": cookie["id"], "name": "Cookie", "requested": 2, "available": 1},
    ]
    # Nothing is held, not even the bagels that would have fit, and no reservation exists.
    assert await shop.rows("SELECT SUM(reserved) AS r FROM products") == [{"r": 0}]
    assert await shop.rows("SELECT * FROM reservations") == []
    assert await shop.rows("SELECT * FROM reservation_lines") == []
    # The order id is not burned: a smaller retry succeeds.
    retry = await shop.reserve("order-1", [(bagel["id"], 2), (pie["id"], 3)])
    assert retry.status_code == 201
    await shop.assert_conserved()


async def test_unknown_product_is_404_and_reserves_nothing(shop):
    bagel, _ = await _two_products(shop)
    resp = await shop.reserve("order-1", [(bagel["id"], 1), ("ghost-1", 1), ("ghost-2", 2)])
    assert resp.status_code == 404
    body = resp.json()
    assert body["type"].endswith("/unknown-product")
    assert sorted(body["products"]) == ["ghost-1", "ghost-2"]
    assert await shop.rows("SELECT * FROM reservations") == []
    assert await shop.available(bagel["id"]) == 10


async def test_commit_sells_and_is_idempotent(shop):
    bagel, pie = await _two_products(shop)
    await shop.reserve("order-1", [(bagel["id"], 2), (pie["id"], 3)])
    for _ in range(3):
        resp = await shop.act("order-1", "commit")
        assert resp.status_code == 200
        assert resp.json()["status"] == "committed"
    stored = await shop.rows("SELECT sku, on_hand, reserved FROM products ORDER BY sku")
    assert stored == [
        {"sku": "BAGEL", "on_hand": 8, "reserved": 0},
        {"sku": "PIE", "on_hand": 0, "reserved": 0},
    ]
    sold = await shop.rows(
        "SELECT product_id, delta, reference FROM stock_ledger WHERE kind = 'sold'"
    )
    assert sorted((r["product_id"], r["delta"], r["reference"]) for r in sold) == sorted(
        [(bagel["id"], -2, "order-1"), (pie["id"], -3, "order-1")]
    )
    items = await shop.assert_conserved()
    assert items[pie["id"]]["sold"] == 3
    assert items[pie["id"]]["available"] == 0
    # Committed units cannot be released any more.
    resp = await shop.act("order-1", "release")
    assert resp.status_code == 409
    assert resp.json()["type"].endswith("/reservation-committed")
    # A replayed reserve for a committed order answers the reservation as it is.
    replay = await shop.reserve("order-1", [(bagel["id"], 2), (pie["id"], 3)])
    assert replay.status_code == 200
    assert replay.json()["status"] == "committed"


async def test_release_gives_units_back_and_is_idempotent(shop):
    bagel, _ = await _two_products(shop)
    await shop.reserve("order-1", [(bagel["id"], 4)])
    for _ in range(3):
        resp = await shop.act("order-1", "release")
        assert resp.status_code == 200
        assert resp.json()["status"] == "released"
    assert await shop.rows("SELECT on_hand, reserved FROM products WHERE sku = 'BAGEL'") == [
        {"on_hand": 10, "reserved": 0}
    ]
    # A released order id is closed for good: replays and commits are refused.
    replay = await shop.reserve("order-1", [(bagel["id"], 4)])
    assert replay.status_code == 409
    assert replay.json()["type"].endswith("/reservation-closed")
    commit = await shop.act("order-1", "commit")
    assert commit.status_code == 409
    assert commit.json()["type"].endswith("/reservation-closed")
    restock = await shop.act("order-1", "restock")
    assert restock.status_code == 409
    assert await shop.available(bagel["id"]) == 10
    await shop.assert_conserved()


async def test_release_of_unknown_order_leaves_a_tombstone(shop):
    bagel, _ = await _two_products(shop)
    resp = await shop.act("late-order", "release")
    assert resp.status_code == 200
    assert resp.json() == {
        "order_id": "late-order",
        "status": "released",
        "expires_at": None,
        "items": [],
    }
    assert await _status(shop, "late-order") == "released"
    late = await shop.reserve("late-order", [(bagel["id"], 1)])
    assert late.status_code == 409
    assert late.json()["type"].endswith("/reservation-closed")
    assert await shop.available(bagel["id"]) == 10
    assert (await shop.act("late-order", "release")).status_code == 200


async def test_restock_returns_committed_units_once(shop):
    bagel, pie = await _two_products(shop)
    await shop.reserve("order-1", [(bagel["id"], 2), (pie["id"], 1)])
    resp = await shop.act("order-1", "restock")
    assert resp.status_code == 409
    assert resp.json()["type"].endswith("/reservation-not-committed")
    await shop.act("order-1", "commit")
    for _ in range(3):
        resp = await shop.act("order-1", "restock")
        assert resp.status_code == 200
        assert resp.json()["status"] == "returned"
    stored = await shop.rows("SELECT sku, on_hand, reserved FROM products ORDER BY sku")
    assert stored == [
        {"sku": "BAGEL", "on_hand": 10, "reserved": 0},
        {"sku": "PIE", "on_hand": 3, "reserved": 0},
    ]
    returned = await shop.rows("SELECT COUNT(*) AS n FROM stock_ledger WHERE kind = 'returned'")
    assert returned == [{"n": 2}]
    items = await shop.assert_conserved()
    assert items[bagel["id"]]["sold"] == 0
    # After a return: commit is a no-op that reports the state, release is refused.
    commit = await shop.act("order-1", "commit")
    assert commit.status_code == 200
    assert commit.json()["status"] == "returned"
    assert (await shop.act("order-1", "release")).status_code == 409
    await shop.assert_conserved()


@pytest.mark.parametrize("action", ["commit", "restock"])
async def test_actions_on_unknown_order_are_404(shop, action):
    resp = await shop.act("never-reserved", action)
    assert resp.status_code == 404
    assert resp.json()["type"].endswith("/reservation-not-found")
    assert await shop.rows("SELECT * FROM reservations") == []


async def test_get_unknown_reservation_is_404(shop):
    resp = await shop.client.get("/internal/reservations/nope", headers=shop.internal)
    assert resp.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"order_id": "o", "items": []},
        {"order_id": "o", "items": [{"product_id": "p", "quantity": 0}]},
        {"order_id": "o", "items": [{"product_id": "p", "quantity": -1}]},
        {"order_id": "o", "items": [{"product_id": "p", "quantity": 10**7}]},
        {"order_id": "o", "items": [{"product_id": "p", "quantity": 1.5}]},
        {"order_id": "o", "items": [{"product_id": "p", "quantity": "1"}]},
        {"order_id": "", "items": [{"product_id": "p", "quantity": 1}]},
        {"order_id": "o" * 101, "items": [{"product_id": "p", "quantity": 1}]},
        {"order_id": "o", "items": [{"product_id": "p", "quantity": 1, "price": 0}]},
        {"order_id": "o", "items": [{"product_id": "p", "quantity": 1}] * 101},
        {"order_id": "o", "items": [{"product_id": "p", "quantity": 1}], "status": "committed"},
        {"items": [{"product_id": "p", "quantity": 1}]},
    ],
)
async def test_reserve_rejects_invalid_bodies(shop, body):
    await _two_products(shop)
    resp = await shop.client.post("/internal/reservations", json=body, headers=shop.internal)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM
    assert await shop.rows("SELECT * FROM reservations") == []


async def test_lookup_returns_known_products_only(shop):
    bagel, pie = await _two_products(shop)
    resp = await shop.client.post(
        "/internal/products/lookup",
        json={"ids": [pie["id"], "ghost", bagel["id"], pie["id"]]},
        headers=shop.internal,
    )
    assert resp.status_code == 200
    assert resp.json() == {"items": [pie, bagel]}
    for body in ({"ids": []}, {"ids": ["x"] * 101}, {"ids": "x"}, {"ids": ["x"], "more": 1}):
        resp = await shop.client.post("/internal/products/lookup", json=body, headers=shop.internal)
        assert resp.status_code == 422


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/internal/products/lookup"),
        ("POST", "/internal/reservations"),
        ("GET", "/internal/reservations/order-1"),
        ("POST", "/internal/reservations/order-1/commit"),
        ("POST", "/internal/reservations/order-1/release"),
        ("POST", "/internal/reservations/order-1/restock"),
        ("GET", "/internal/stock-audit"),
    ],
)
async def test_internal_routes_need_the_internal_token(shop, method, path):
    bagel, _ = await _two_products(shop)
    await shop.reserve("order-1", [(bagel["id"], 1)])
    body = {"order_id": "order-2", "items": [{"product_id": bagel["id"], "quantity": 1}]}
    kwargs = {"json": body} if method == "POST" else {}
    for headers in ({}, {"X-Internal-Token": "wrong"}, shop.admin):
        resp = await shop.client.request(method, path, headers=headers, **kwargs)
        assert resp.status_code == 401, (path, headers)
        assert resp.headers["content-type"] == PROBLEM
    assert await _status(shop, "order-1") == "active"
    assert await _status(shop, "order-2") is None
    assert await shop.available(bagel["id"]) == 9
