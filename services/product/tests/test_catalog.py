"""Public catalog reads: search, category filter, keyset pagination, errors as problem+json."""

from __future__ import annotations

import pytest
from shopkit.schemas import encode_cursor

PROBLEM = "application/problem+json"


async def _names(shop, **params) -> list[str]:
    resp = await shop.client.get("/api/v1/products", params=params)
    assert resp.status_code == 200, resp.text
    return [item["name"] for item in resp.json()["items"]]


async def test_product_shape_and_read(shop):
    created = await shop.create_product(available=7)
    resp = await shop.client.get(f"/api/v1/products/{created['id']}")
    assert resp.status_code == 200
    assert resp.json() == {
        "id": created["id"],
        "sku": "SKU-1",
        "name": "Plain Bagel",
        "description": "Boiled then baked.",
        "category": "bread",
        "price": {"amount": 250, "currency": "USD"},
        "available": 7,
    }


async def test_unknown_product_is_404_problem(shop):
    for product_id in ["does-not-exist", "x" * 300, "%25_%27;--"]:
        resp = await shop.client.get(f"/api/v1/products/{product_id}")
        assert resp.status_code == 404
        assert resp.headers["content-type"] == PROBLEM
        assert resp.json()["type"].endswith("product-not-found")


async def test_search_is_case_insensitive_on_name_and_description(shop):
    await shop.create_product(sku="A", name="Lemon Tart", description="Sharp and sweet")
    await shop.create_product(sku="B", name="Plain Scone", description="Serve with LEMON curd")
    await shop.create_product(sku="C", name="Rye Bread", description="Caraway seeds")
    assert await _names(shop, q="lemon") == ["Lemon Tart", "Plain Scone"]
    assert await _names(shop, q="LeMoN") == ["Lemon Tart", "Plain Scone"]
    assert await _names(shop, q="caraway") == ["Rye Bread"]
    assert await _names(shop, q="nothing like this") == []


async def test_search_treats_like_wildcards_literally(shop):
    await shop.create_product(sku="P", name="100% Rye", description="no wheat")
    await shop.create_product(sku="Q", name="100 Grain Loaf", description="seeds")
    await shop.create_product(sku="U", name="Snake_Case Cookie", description="odd")
    await shop.create_product(sku="V", name="SnakeXCase Cookie", description="odd")
    await shop.create_product(sku="W", name="Back\\slash Bun", description="odd")
    assert await _names(shop, q="100%") == ["100% Rye"]
    assert await _names(shop, q="%") == ["100% Rye"]
    assert await _names(shop, q="e_c") == ["Snake_Case Cookie"]
    assert await _names(shop, q="_") == ["Snake_Case Cookie"]
    assert await _names(shop, q="k\\s") == ["Back\\slash Bun"]


async def test_category_filter_is_exact(shop):
    await shop.create_product(sku="A", name="Baguette", category="bread")
    await shop.create_product(sku="B", name="Brownie", category="cakes")
    await shop.create_product(sku="C", name="Bread Pudding", category="breads")
    assert await _names(shop, category="bread") == ["Baguette"]
    assert await _names(shop, category="cakes") == ["Brownie"]
    assert await _names(shop, category="brea") == []
    assert await _names(shop, category="bread", q="pudding") == []


async def test_categories_are_sorted_and_distinct(shop):
    assert (await shop.client.get("/api/v1/categories")).json() == {"items": []}
    for sku, category in [("A", "pies"), ("B", "bread"), ("C", "pies"), ("D", "coffee")]:
        await shop.create_product(sku=sku, name=f"Item {sku}", category=category)
    resp = await shop.client.get("/api/v1/categories")
    assert resp.status_code == 200
    assert resp.json() == {"items": ["bread", "coffee", "pies"]}


async def test_pagination_walks_every_product_once(shop):
    created = set()
    # Duplicate names on purpose: the id breaks ties, so no item is skipped or repeated.
    for i in range(23):
        product = await shop.create_product(sku=f"S{i}", name=f"Cookie {i % 7}")
        created.add(product["id"])
    seen: list[str] = []
    names: list[tuple[str, str]] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        resp = await shop.client.get("/api/v1/products", params=params)
        assert resp.status_code == 200
        page = resp.json()
        assert len(page["items"]) <= 5
        seen += [item["id"] for item in page["items"]]
        names += [(item["name"], item["id"]) for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == created
    assert names == sorted(names)


async def test_pagination_with_search_and_category(shop):
    for i in range(7):
        await shop.create_product(sku=f"T{i}", name=f"Tart {i}", category="pies")
        await shop.create_product(sku=f"B{i}", name=f"Tart bread {i}", category="bread")
    seen = []
    cursor = None
    while True:
        params = {"limit": 3, "q": "TART", "category": "pies"}
        if cursor:
            params["cursor"] = cursor
        page = (await shop.client.get("/api/v1/products", params=params)).json()
        seen += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"Tart {i}" for i in range(7)]


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor!!"},
        {"cursor": "e30"},  # "{}" encoded: a cursor with the wrong keys
        {"cursor": encode_cursor({"name": 5, "id": "x"})},
        {"cursor": encode_cursor({"name": "a", "id": "b", "extra": 1})},
        {"cursor": "x" * 5000},
        {"limit": 0},
        {"limit": 101},
        {"limit": 10**30},
        {"limit": "ten"},
        {"q": "x" * 500},
    ],
)
async def test_bad_query_parameters_are_422_problems(shop, params):
    resp = await shop.client.get("/api/v1/products", params=params)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["status"] == 422
    assert body["errors"]


async def test_limit_default_is_20(shop):
    for i in range(21):
        await shop.create_product(sku=f"S{i}", name=f"Bun {i:02d}")
    page = (await shop.client.get("/api/v1/products")).json()
    assert len(page["items"]) == 20
    assert page["next_cursor"] is not None


async def test_catalog_reads_need_no_token(shop):
    product = await shop.create_product()
    for path in ["/api/v1/products", f"/api/v1/products/{product['id']}", "/api/v1/categories"]:
        assert (await shop.client.get(path)).status_code == 200
