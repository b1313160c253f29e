"""The customer's cart over the public routes, against the real product service."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from shopkit.testing import TokenFactory

PROBLEM = "https://sweetslice.dev/problems/"
EMPTY = {"items": [], "total": {"amount": 0, "currency": "USD"}}


def usd(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "USD"}


async def test_new_customer_has_an_empty_cart(shop: Any) -> None:
    _, headers = shop.customer()

    resp = await shop.client.get("/api/v1/cart", headers=headers)

    assert resp.status_code == 200
    assert resp.json() == EMPTY


async def test_set_replace_and_remove_lines_with_totals(shop: Any, product: Any) -> None:
    loaf = await product.add("Sourdough Loaf", 650)
    cookie = await product.add("Chocolate Chip Cookie", 175)
    _, headers = shop.customer()

    first = await shop.put(headers, loaf, 2)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "items": [
            {
                "product_id": loaf,
                "name": "Sourdough Loaf",
                "quantity": 2,
                "unit_price": usd(650),
                "line_total": usd(1300),
            }
        ],
        "total": usd(1300),
    }

    second = await shop.put(headers, cookie, 12)
    assert [i["product_id"] for i in second.json()["items"]] == [loaf, cookie]
    assert second.json()["total"] == usd(1300 + 12 * 175)

    # Setting a line again replaces its quantity; it does not add to it or move it.
    replaced = await shop.put(headers, loaf, 5)
    assert [(i["product_id"], i["quantity"]) for i in replaced.json()["items"]] == [
        (loaf, 5),
        (cookie, 12),
    ]
    assert replaced.json()["total"] == usd(5 * 650 + 12 * 175)

    removed = await shop.client.delete(f"/api/v1/cart/items/{loaf}", headers=headers)
    assert removed.status_code == 200
    assert removed.json()["items"][0]["product_id"] == cookie
    assert removed.json()["total"] == usd(12 * 175)
    again = await shop.client.delete(f"/api/v1/cart/items/{loaf}", headers=headers)
    assert again.status_code == 200
    assert again.json() == removed.json()

    got = await shop.client.get("/api/v1/cart", headers=headers)
    assert got.json() == removed.json()


async def test_emptying_the_cart(shop: Any, product: Any) -> None:
    loaf = await product.add()
    customer_id, headers = shop.customer()
    await shop.put(headers, loaf, 1)

    resp = await shop.client.delete("/api/v1/cart", headers=headers)

    assert resp.status_code == 204
    assert resp.content == b""
    assert (await shop.client.get("/api/v1/cart", headers=headers)).json() == EMPTY
    assert await shop.sql("SELECT * FROM cart_lines WHERE customer_id = :c", c=customer_id) == []
    # Emptying an empty cart is fine too.
    assert (await shop.client.delete("/api/v1/cart", headers=headers)).status_code == 204


async def test_unknown_product_is_404(shop: Any, product: Any) -> None:
    _, headers = shop.customer()
    for product_id in (str(uuid.uuid4()), "no-such-thing", "x" * 40, "caf%C3%A9"):
        resp = await shop.put(headers, product_id, 1)
        assert resp.status_code == 404, (product_id, resp.text)
        assert resp.json()["type"] == PROBLEM + "unknown-product"
    assert await shop.sql("SELECT * FROM cart_lines") == []


async def test_overlong_product_id_is_422(shop: Any) -> None:
    _, headers = shop.customer()
    assert (await shop.put(headers, "p" * 65, 1)).status_code == 422
    resp = await shop.client.delete(f"/api/v1/cart/items/{'p' * 65}", headers=headers)
    assert resp.status_code == 422


@pytest.mark.parametrize("quantity", [0, 100, -1, "x", "5", 1.5, 2.0, True, None, 10**20])
async def test_bad_quantities_are_422(shop: Any, product: Any, quantity: Any) -> None:
    loaf = await product.add()
    _, headers = shop.customer()

    resp = await shop.put(headers, loaf, quantity)

    assert resp.status_code == 422
    assert resp.json()["type"] == PROBLEM + "validation-error"
    assert await shop.sql("SELECT * FROM cart_lines") == []


async def test_malformed_item_bodies_are_422(shop: Any, product: Any) -> None:
    loaf = await product.add()
    _, headers = shop.customer()
    url = f"/api/v1/cart/items/{loaf}"
    for body in ({}, {"quantity": 1, "price": 1}, [1], "1"):
        assert (await shop.client.put(url, json=body, headers=headers)).status_code == 422
    raw = await shop.client.put(
        url, content=b"{", headers={**headers, "content-type": "application/json"}
    )
    assert raw.status_code == 422


ROUTES = [
    ("GET", "/api/v1/cart"),
    ("PUT", "/api/v1/cart/items/some-product"),
    ("DELETE", "/api/v1/cart/items/some-product"),
    ("DELETE", "/api/v1/cart"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_a_valid_token_is_required(shop: Any, method: str, path: str) -> None:
    body = {"quantity": 1} if method == "PUT" else None
    forged = TokenFactory().headers()
    expired = shop.tokens.headers(ttl=-3600)
    for headers in ({}, {"Authorization": "Bearer nonsense"}, forged, expired):
        resp = await shop.client.request(method, path, json=body, headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert resp.headers["www-authenticate"].startswith("Bearer")


async def test_customers_only_see_their_own_cart(shop: Any, product: Any) -> None:
    loaf = await product.add()
    alice, alice_headers = shop.customer()
    _, bob_headers = shop.customer()
    await shop.put(alice_headers, loaf, 3)

    bob_cart = await shop.client.get("/api/v1/cart", headers=bob_headers)
    await shop.client.delete(f"/api/v1/cart/items/{loaf}", headers=bob_headers)
    await shop.client.delete("/api/v1/cart", headers=bob_headers)

    assert bob_cart.json() == EMPTY
    alice_cart = await shop.client.get("/api/v1/cart", headers=alice_headers)
    assert [(i["product_id"], i["quantity"]) for i in alice_cart.json()["items"]] == [(loaf, 3)]
    assert (await shop.internal_cart(alice))["items"] == [{"product_id": loaf, "quantity": 3}]


async def test_lines_are_repriced_from_the_catalog(shop: Any, product: Any) -> None:
    loaf = await product.add("Rye Loaf", 500)
    _, headers = shop.customer()
    await shop.put(headers, loaf, 2)

    await product.set_price(loaf, 550)
    resp = await shop.client.get("/api/v1/cart", headers=headers)

    assert resp.json()["items"][0]["unit_price"] == usd(550)
    assert resp.json()["total"] == usd(1100)


async def test_snapshot_prices_when_the_catalog_is_down(shop: Any, product: Any) -> None:
    loaf = await product.add("Rye Loaf", 500)
    cookie = await product.add("Oat Cookie", 150)
    _, headers = shop.customer()
    await shop.put(headers, loaf, 2)
    await shop.put(headers, cookie, 4)
    await product.set_price(loaf, 800)

    await product.stop()
    resp = await shop.client.get("/api/v1/cart", headers=headers)

    # Still rendered, at the prices stored when the lines were set.
    assert resp.status_code == 200
    assert resp.json() == {
        "items": [
            {
                "product_id": loaf,
                "name": "Rye Loaf",
                "quantity": 2,
                "unit_price": usd(500),
                "line_total": usd(1000),
            },
            {
                "product_id": cookie,
                "name": "Oat Cookie",
                "quantity": 4,
                "unit_price": usd(150),
                "line_total": usd(600),
            },
        ],
        "total": usd(1600),
    }
    # Removing a line works without the catalog too.
    removed = await shop.client.delete(f"/api/v1/cart/items/{cookie}", headers=headers)
    assert removed.status_code == 200
    assert removed.json()["total"] == usd(1000)
    # A new line cannot be checked, so it is refused as a dependency failure, not stored.
    refused = await shop.put(headers, cookie, 1)
    assert refused.status_code == 503
    assert refused.headers["retry-after"]
    assert [i["product_id"] for i in removed.json()["items"]] == [loaf]


async def test_products_gone_from_the_catalog_are_not_shown(shop: Any, product: Any) -> None:
    loaf = await product.add("Rye Loaf", 500)
    customer_id, headers = shop.customer()
    await shop.put(headers, loaf, 1)
    # A line whose product the catalog no longer knows (as if it had been withdrawn).
    await shop.sql(
        "INSERT INTO cart_lines (customer_id, product_id, quantity, name, unit_price, added_at)"
        " VALUES (:c, :p, 2, 'Withdrawn Tart', 900, '2026-01-01 00:00:00')",
        c=customer_id,
        p=str(uuid.uuid4()),
    )

    resp = await shop.client.get("/api/v1/cart", headers=headers)

    assert [i["product_id"] for i in resp.json()["items"]] == [loaf]
    assert resp.json()["total"] == usd(500)


async def test_a_cart_holds_at_most_fifty_products(shop: Any, product: Any) -> None:
    ids = await asyncio.gather(*(product.add(f"Petit Four {n}", 100 + n) for n in range(51)))
    _, headers = shop.customer()
    for product_id in ids[:50]:
        assert (await shop.put(headers, product_id, 1)).status_code == 200

    over = await shop.put(headers, ids[50], 1)
    # Changing a line already in a full cart is still allowed.
    change = await shop.put(headers, ids[0], 7)

    assert over.status_code == 422
    assert over.json()["type"] == PROBLEM + "cart-full"
    assert change.status_code == 200
    assert len(change.json()["items"]) == 50
    assert change.json()["total"] == usd(sum(100 + n for n in range(50)) + 6 * 100)


async def test_concurrent_first_writes_of_one_customer(shop: Any, product: Any) -> None:
    ids = await asyncio.gather(*(product.add(f"Eclair {n}", 300) for n in range(8)))
    customer_id, headers = shop.customer()

    answers = await asyncio.gather(*(shop.put(headers, pid, 1) for pid in ids))

    assert [a.status_code for a in answers] == [200] * 8
    cart = await shop.internal_cart(customer_id)
    assert sorted(i["product_id"] for i in cart["items"]) == sorted(ids)
    assert cart["version"] == 8
