"""The checkout's view of carts: versions and clearing only what was ordered."""

from __future__ import annotations

from typing import Any

import pytest
from shop_cart.models import Base
from shop_cart.settings import CartSettings
from shopkit.migrations import schema_drift


async def test_new_customer_is_empty_at_version_zero(shop: Any) -> None:
    assert await shop.internal_cart("customer-new") == {
        "customer_id": "customer-new",
        "version": 0,
        "items": [],
    }


async def test_every_change_increments_the_version(shop: Any, product: Any) -> None:
    loaf = await product.add()
    cookie = await product.add("Cookie", 100)
    customer_id, headers = shop.customer()

    async def version() -> int:
        value: int = (await shop.internal_cart(customer_id))["version"]
        return value

    await shop.put(headers, loaf, 1)
    assert await version() == 1
    await shop.put(headers, loaf, 1)
    assert await version() == 2
    await shop.put(headers, cookie, 3)
    assert await version() == 3
    await shop.client.delete(f"/api/v1/cart/items/{cookie}", headers=headers)
    assert await version() == 4
    # Nothing to remove: nothing changed.
    await shop.client.delete(f"/api/v1/cart/items/{cookie}", headers=headers)
    await shop.client.get("/api/v1/cart", headers=headers)
    assert await version() == 4
    await shop.client.delete("/api/v1/cart", headers=headers)
    assert await version() == 5
    # Emptying never resets the version, so an old reader cannot match a refilled cart.
    await shop.put(headers, loaf, 1)
    assert await version() == 6
    assert (await shop.internal_cart(customer_id))["items"] == [{"product_id": loaf, "quantity": 1}]


async def test_clear_with_the_current_version(shop: Any, product: Any) -> None:
    loaf = await product.add()
    customer_id, headers = shop.customer()
    await shop.put(headers, loaf, 2)
    seen = await shop.internal_cart(customer_id)

    resp = await shop.client.post(
        f"/internal/carts/{customer_id}/clear",
        json={"version": seen["version"]},
        headers=shop.internal,
    )

    assert resp.status_code == 200
    assert resp.json() == {"cleared": True}
    after = await shop.internal_cart(customer_id)
    assert after["items"] == []
    assert after["version"] == seen["version"] + 1
    # The same clear again is stale now and changes nothing.
    again = await shop.client.post(
        f"/internal/carts/{customer_id}/clear",
        json={"version": seen["version"]},
        headers=shop.internal,
    )
    assert again.json() == {"cleared": False}


async def test_clear_with_a_stale_version_keeps_the_cart(shop: Any, product: Any) -> None:
    loaf = await product.add()
    cookie = await product.add("Cookie", 100)
    customer_id, headers = shop.customer()
    await shop.put(headers, loaf, 2)
    seen = await shop.internal_cart(customer_id)
    # The customer changes the cart while checkout is running.
    await shop.put(headers, cookie, 1)

    resp = await shop.client.post(
        f"/internal/carts/{customer_id}/clear",
        json={"version": seen["version"]},
        headers=shop.internal,
    )

    assert resp.json() == {"cleared": False}
    kept = await shop.internal_cart(customer_id)
    assert len(kept["items"]) == 2
    assert kept["version"] == seen["version"] + 1


async def test_clear_of_a_cart_never_written(shop: Any) -> None:
    url = "/internal/carts/customer-x/clear"
    assert (await shop.client.post(url, json={"version": 0}, headers=shop.internal)).json() == {
        "cleared": True
    }
    assert (await shop.client.post(url, json={"version": 3}, headers=shop.internal)).json() == {
        "cleared": False
    }
    assert await shop.sql("SELECT * FROM carts") == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"version": -1},
        {"version": "1"},
        {"version": 1.0},
        {"version": 2**40},
        {"version": 1, "extra": True},
        {"version": None},
    ],
)
async def test_malformed_clear_bodies_are_422(shop: Any, body: Any) -> None:
    resp = await shop.client.post(
        "/internal/carts/customer-x/clear", json=body, headers=shop.internal
    )
    assert resp.status_code == 422


async def test_internal_routes_need_the_internal_token(shop: Any) -> None:
    _, user_headers = shop.customer()
    for headers in ({}, {"X-Internal-Token": "wrong"}, user_headers):
        got = await shop.client.get("/internal/carts/c1", headers=headers)
        cleared = await shop.client.post(
            "/internal/carts/c1/clear", json={"version": 0}, headers=headers
        )
        assert (got.status_code, cleared.status_code) == (401, 401)


async def test_overlong_customer_id_is_422(shop: Any) -> None:
    resp = await shop.client.get(f"/internal/carts/{'c' * 65}", headers=shop.internal)
    assert resp.status_code == 422


async def test_migrations_match_the_models(shop: Any) -> None:
    assert await schema_drift(shop.app.state.db, Base.metadata) == []


def test_settings_defaults() -> None:
    settings = CartSettings()
    assert (settings.service_name, settings.port, settings.max_lines) == ("cart", 8103, 50)
    assert settings.product_url == "http://127.0.0.1:8102"
