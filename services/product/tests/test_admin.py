"""Admin writes: create, patch, set stock; authentication, roles and mass assignment."""

from __future__ import annotations

import asyncio

import pytest

PROBLEM = "application/problem+json"
NEW = {
    "sku": "CAK-NEW",
    "name": "Opera Cake",
    "description": "Almond sponge, coffee syrup, ganache.",
    "category": "cakes",
    "price": {"amount": 3900, "currency": "USD"},
    "available": 4,
}


async def test_create_product_is_stored_with_initial_ledger(shop):
    admin = shop.tokens.headers("admin-7", roles=("admin",))
    resp = await shop.client.post("/api/v1/products", json=NEW, headers=admin)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert {k: v for k, v in body.items() if k != "id"} == NEW
    stored = await shop.rows("SELECT * FROM products WHERE id = :id", id=body["id"])
    assert stored[0]["on_hand"] == 4
    assert stored[0]["reserved"] == 0
    assert stored[0]["price_amount"] == 3900
    ledger = await shop.rows(
        "SELECT kind, delta, reference FROM stock_ledger WHERE product_id = :id", id=body["id"]
    )
    assert ledger == [{"kind": "initial", "delta": 4, "reference": "admin:admin-7"}]
    got = await shop.client.get(f"/api/v1/products/{body['id']}")
    assert got.json() == body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/products"),
        ("PATCH", "/api/v1/products/{id}"),
        ("PUT", "/api/v1/products/{id}/stock"),
    ],
)
async def test_admin_routes_need_an_admin(shop, method, path):
    product = await shop.create_product()
    url = path.format(id=product["id"])
    body = {"available": 1} if path.endswith("stock") else NEW
    if method == "PATCH":
        body = {"name": "Hijacked"}
    resp = await shop.client.request(method, url, json=body)
    assert resp.status_code == 401
    assert resp.headers["content-type"] == PROBLEM
    assert resp.headers["www-authenticate"].startswith("Bearer")
    forged = {"Authorization": "Bearer not.a.token"}
    assert (await shop.client.request(method, url, json=body, headers=forged)).status_code == 401
    resp = await shop.client.request(method, url, json=body, headers=shop.customer)
    assert resp.status_code == 403
    assert resp.headers["content-type"] == PROBLEM
    stored = await shop.rows("SELECT name, on_hand FROM products ORDER BY sku")
    assert stored == [{"name": "Plain Bagel", "on_hand": 10}]


async def test_sku_taken_is_409(shop):
    await shop.create_product(sku="DUP")
    resp = await shop.client.post("/api/v1/products", json=NEW | {"sku": "DUP"}, headers=shop.admin)
    assert resp.status_code == 409
    assert resp.json()["type"].endswith("/sku-taken")
    assert len(await shop.rows("SELECT id FROM products")) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"id": "chosen-id"},
        {"reserved": 5},
        {"on_hand": 100},
        {"unknown": 1},
        {"sku": ""},
        {"sku": "x" * 65},
        {"sku": "has space"},
        {"name": ""},
        {"name": "n" * 201},
        {"description": "d" * 2001},
        {"category": "Cakes"},
        {"category": "c" * 51},
        {"category": ""},
        {"price": {"amount": -1, "currency": "USD"}},
        {"price": {"amount": 10**9 + 1, "currency": "USD"}},
        {"price": {"amount": 1.5, "currency": "USD"}},
        {"price": {"amount": "100", "currency": "USD"}},
        {"price": {"amount": 100, "currency": "EUR"}},
        {"available": -1},
        {"available": 10**9 + 1},
        {"available": 10**40},
        {"available": True},
    ],
)
async def test_create_rejects_invalid_bodies(shop, change):
    resp = await shop.client.post("/api/v1/products", json=NEW | change, headers=shop.admin)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM
    assert await shop.rows("SELECT id FROM products") == []


async def test_create_rejects_non_json(shop):
    resp = await shop.client.post(
        "/api/v1/products",
        content=b"{not json",
        headers=shop.admin | {"content-type": "application/json"},
    )
    assert resp.status_code == 422
    assert resp.headers["content-type"] == PROBLEM


async def test_patch_is_partial(shop):
    product = await shop.create_product(available=3)
    resp = await shop.client.patch(
        f"/api/v1/products/{product['id']}",
        json={"name": "Everything Bagel", "price": {"amount": 300, "currency": "USD"}},
        headers=shop.admin,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == product | {
        "name": "Everything Bagel",
        "price": {"amount": 300, "currency": "USD"},
    }
    stored = await shop.rows("SELECT name, description, price_amount, on_hand FROM products")
    assert stored == [
        {
            "name": "Everything Bagel",
            "description": "Boiled then baked.",
            "price_amount": 300,
            "on_hand": 3,
        }
    ]
    resp = await shop.client.patch(
        f"/api/v1/products/{product['id']}",
        json={"description": "", "category": "bagels"},
        headers=shop.admin,
    )
    assert resp.json()["description"] == ""
    assert resp.json()["category"] == "bagels"
    assert resp.json()["name"] == "Everything Bagel"


async def test_patch_sku_only_when_free(shop):
    first = await shop.create_product(sku="FIRST")
    await shop.create_product(sku="SECOND", name="Other")
    url = f"/api/v1/products/{first['id']}"
    resp = await shop.client.patch(url, json={"sku": "SECOND"}, headers=shop.admin)
    assert resp.status_code == 409
    assert resp.json()["type"].endswith("/sku-taken")
    resp = await shop.client.patch(url, json={"sku": "FIRST"}, headers=shop.admin)
    assert resp.status_code == 200
    resp = await shop.client.patch(url, json={"sku": "THIRD"}, headers=shop.admin)
    assert resp.status_code == 200
    assert resp.json()["sku"] == "THIRD"
    skus = await shop.rows("SELECT sku FROM products ORDER BY sku")
    assert skus == [{"sku": "SECOND"}, {"sku": "THIRD"}]


@pytest.mark.parametrize(
    "change",
    [
        {"id": "x"},
        {"reserved": 0},
        {"available": 5},
        {"on_hand": 5},
        {"name": None},
        {"price": None},
        {"name": ""},
        {"category": "Not A Slug"},
        {"price": {"amount": -5, "currency": "USD"}},
    ],
)
async def test_patch_rejects_mass_assignment_and_invalid_values(shop, change):
    product = await shop.create_product()
    resp = await shop.client.patch(
        f"/api/v1/products/{product['id']}", json=change, headers=shop.admin
    )
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM
    stored = await shop.rows("SELECT id, name, price_amount, on_hand, reserved FROM products")
    assert stored == [
        {
            "id": product["id"],
            "name": "Plain Bagel",
            "price_amount": 250,
            "on_hand": 10,
            "reserved": 0,
        }
    ]


async def test_patch_and_stock_unknown_product_404(shop):
    resp = await shop.client.patch("/api/v1/products/nope", json={"name": "x"}, headers=shop.admin)
    assert resp.status_code == 404
    resp = await shop.client.put(
        "/api/v1/products/nope/stock", json={"available": 1}, headers=shop.admin
    )
    assert resp.status_code == 404
    assert resp.headers["content-type"] == PROBLEM


async def test_set_stock_accounts_for_reservations(shop):
    product = await shop.create_product(available=10)
    assert (await shop.reserve("order-1", [(product["id"], 4)])).status_code == 201
    assert await shop.available(product["id"]) == 6
    url = f"/api/v1/products/{product['id']}/stock"
    resp = await shop.client.put(url, json={"available": 20}, headers=shop.admin)
    assert resp.status_code == 200
    assert resp.json()["available"] == 20
    stored = await shop.rows("SELECT on_hand, reserved FROM products")
    assert stored == [{"on_hand": 24, "reserved": 4}]
    resp = await shop.client.put(url, json={"available": 0}, headers=shop.admin)
    assert resp.json()["available"] == 0
    stored = await shop.rows("SELECT on_hand, reserved FROM products")
    assert stored == [{"on_hand": 4, "reserved": 4}]
    ledger = await shop.rows(
        "SELECT kind, delta FROM stock_ledger WHERE product_id = :id ORDER BY created_at",
        id=product["id"],
    )
    assert ledger == [
        {"kind": "initial", "delta": 10},
        {"kind": "adjustment", "delta": 14},
        {"kind": "adjustment", "delta": -20},
    ]
    await shop.assert_conserved()
    # The held units can still be sold: they were not taken away by the adjustment.
    assert (await shop.act("order-1", "commit")).status_code == 200
    items = await shop.assert_conserved()
    assert items[product["id"]]["sold"] == 4
    assert items[product["id"]]["on_hand"] == 0


@pytest.mark.parametrize(
    "body",
    [{"available": -1}, {"available": 10**9 + 1}, {"available": "5"}, {}, {"available": 1, "x": 1}],
)
async def test_set_stock_rejects_invalid(shop, body):
    product = await shop.create_product()
    resp = await shop.client.put(
        f"/api/v1/products/{product['id']}/stock", json=body, headers=shop.admin
    )
    assert resp.status_code == 422
    assert (await shop.rows("SELECT on_hand FROM products")) == [{"on_hand": 10}]


async def test_concurrent_creates_of_one_sku_store_one_product(shop):
    answers = await asyncio.gather(
        *(
            shop.client.post(
                "/api/v1/products", json=NEW | {"name": f"Opera {i}"}, headers=shop.admin
            )
            for i in range(6)
        )
    )
    assert sorted(r.status_code for r in answers) == [201] + [409] * 5
    assert await shop.rows("SELECT sku FROM products") == [{"sku": "CAK-NEW"}]
    assert len(await shop.rows("SELECT id FROM stock_ledger")) == 1
