"""Catalog through the gateway: API.md's Catalog table, row by row."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import httpx

from tests.e2e.support import RunningPlatform, assert_problem, new_customer


async def all_products(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = {**params, "limit": 7, **({"cursor": cursor} if cursor else {})}
        resp = await client.get("/api/v1/products", params=query)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


async def test_seeded_catalog_pages_through_every_product_once(client: httpx.AsyncClient) -> None:
    items = await all_products(client)
    ids = [p["id"] for p in items]
    assert len(ids) == len(set(ids))
    assert len(items) >= 20
    categories = (await client.get("/api/v1/categories")).json()["items"]
    assert len(categories) >= 4
    assert {p["category"] for p in items} <= set(categories)
    sample = items[0]
    assert set(sample) >= {"id", "sku", "name", "description", "category", "price", "available"}
    assert sample["price"]["currency"] == "USD"
    assert isinstance(sample["price"]["amount"], int)
    assert sample["available"] >= 0
    default_page = (await client.get("/api/v1/products")).json()
    assert len(default_page["items"]) == 20


async def test_search_and_category_filter(client: httpx.AsyncClient) -> None:
    items = await all_products(client)
    target = items[3]
    word = target["name"].split()[0]
    found = await all_products(client, q=word.upper())
    assert target["id"] in {p["id"] for p in found}
    for p in found:
        assert word.lower() in (p["name"] + " " + p["description"]).lower()
    category = target["category"]
    in_category = await all_products(client, category=category)
    assert in_category
    assert all(p["category"] == category for p in in_category)
    assert {p["id"] for p in in_category} == {p["id"] for p in items if p["category"] == category}
    nothing = await client.get("/api/v1/products", params={"q": "%_%no-such-thing"})
    assert nothing.json()["items"] == []


async def test_bad_paging_parameters_are_422(client: httpx.AsyncClient) -> None:
    for params in (
        {"limit": 0},
        {"limit": 101},
        {"limit": 10**9},
        {"limit": "x"},
        {"cursor": "!!"},
    ):
        assert_problem(await client.get("/api/v1/products", params=params), 422)


async def test_product_by_id(client: httpx.AsyncClient) -> None:
    product = (await client.get("/api/v1/products", params={"limit": 1})).json()["items"][0]
    resp = await client.get(f"/api/v1/products/{product['id']}")
    assert resp.status_code == 200
    assert resp.json() == product
    assert_problem(await client.get(f"/api/v1/products/{uuid.uuid4()}"), 404)
    assert_problem(await client.get("/api/v1/products/%00%ff"), 404)


def new_product(**overrides: Any) -> dict[str, Any]:
    sku = f"TEST-{uuid.uuid4().hex[:10]}"
    return {
        "sku": sku,
        "name": f"Test Tart {sku}",
        "description": "A tart made by the test suite",
        "category": "tarts",
        "price": {"amount": 450, "currency": "USD"},
        "available": 5,
        **overrides,
    }


async def test_admin_manages_products(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = new_product()
    resp = await client.post("/api/v1/products", json=body, headers=admin_headers)
    assert resp.status_code == 201, resp.text
    product = resp.json()
    assert product["available"] == 5
    assert product["sku"] == body["sku"]
    assert "tarts" in (await client.get("/api/v1/categories")).json()["items"]
    assert_problem(await client.post("/api/v1/products", json=body, headers=admin_headers), 409)

    resp = await client.patch(
        f"/api/v1/products/{product['id']}",
        json={"name": "Renamed Tart", "price": {"amount": 500, "currency": "USD"}},
        headers=admin_headers,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "Renamed Tart"
    assert resp.json()["price"]["amount"] == 500
    assert (await client.get(f"/api/v1/products/{product['id']}")).json()["name"] == "Renamed Tart"

    resp = await client.put(
        f"/api/v1/products/{product['id']}/stock", json={"available": 42}, headers=admin_headers
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["available"] == 42


async def test_admin_routes_refuse_customers_and_strangers(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    customer = await new_customer(client)
    product = (await client.get("/api/v1/products", params={"limit": 1})).json()["items"][0]
    calls = [
        ("POST", "/api/v1/products", new_product()),
        ("PATCH", f"/api/v1/products/{product['id']}", {"name": "Hacked"}),
        ("PUT", f"/api/v1/products/{product['id']}/stock", {"available": 0}),
    ]
    for method, path, body in calls:
        assert_problem(await client.request(method, path, json=body), 401)
        assert_problem(await client.request(method, path, json=body, headers=customer.headers), 403)
    unchanged = (await client.get(f"/api/v1/products/{product['id']}")).json()
    assert unchanged == product


async def test_admin_input_is_validated(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for body in (
        new_product(price={"amount": -1, "currency": "USD"}),
        new_product(price={"amount": 1.5, "currency": "USD"}),
        new_product(price={"amount": 100, "currency": "EUR"}),
        new_product(available=-3),
        new_product(sku=""),
        new_product(id="chosen-id"),
    ):
        assert_problem(await client.post("/api/v1/products", json=body, headers=admin_headers), 422)
    missing = f"/api/v1/products/{uuid.uuid4()}"
    assert_problem(await client.patch(missing, json={"name": "x"}, headers=admin_headers), 404)
    assert_problem(
        await client.put(missing + "/stock", json={"available": 1}, headers=admin_headers), 404
    )
    product = (await client.get("/api/v1/products", params={"limit": 1})).json()["items"][0]
    path = f"/api/v1/products/{product['id']}"
    assert_problem(await client.patch(path, json={"name": ""}, headers=admin_headers), 422)
    assert_problem(await client.patch(path, json={"available": 5}, headers=admin_headers), 422)
    for stock in ({"available": -1}, {"available": "many"}, {}):
        assert_problem(await client.put(path + "/stock", json=stock, headers=admin_headers), 422)


async def test_catalog_reads_survive_the_other_services(
    platform: RunningPlatform, client: httpx.AsyncClient
) -> None:
    """kill -9 of cart, order, payment and notification leaves browsing answering 200."""
    with contextlib.ExitStack() as stack:
        for name in ("cart", "order", "payment", "notification"):
            stack.enter_context(platform.down(name, kill=True))
        assert (await client.get("/api/v1/products")).status_code == 200
        assert (await client.get("/api/v1/categories")).status_code == 200
        product = (await client.get("/api/v1/products", params={"limit": 1})).json()["items"][0]
        assert (await client.get(f"/api/v1/products/{product['id']}")).status_code == 200
