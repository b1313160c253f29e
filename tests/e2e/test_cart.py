"""Cart through the gateway: API.md's Cart table."""

from __future__ import annotations

import uuid

import httpx

from tests.e2e.support import assert_problem, new_customer


async def test_cart_lines_are_priced_from_the_catalog(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client)
    h = customer.headers
    empty = await client.get("/api/v1/cart", headers=h)
    assert empty.status_code == 200
    assert empty.json()["items"] == []
    assert empty.json()["total"]["amount"] == 0

    products = (await client.get("/api/v1/products", params={"limit": 2})).json()["items"]
    a, b = products
    resp = await client.put(f"/api/v1/cart/items/{a['id']}", json={"quantity": 2}, headers=h)
    assert resp.status_code == 200, resp.text
    resp = await client.put(f"/api/v1/cart/items/{b['id']}", json={"quantity": 1}, headers=h)
    cart = resp.json()
    lines = {line["product_id"]: line for line in cart["items"]}
    assert lines[a["id"]]["quantity"] == 2
    assert lines[a["id"]]["unit_price"] == a["price"]
    assert lines[a["id"]]["line_total"]["amount"] == 2 * a["price"]["amount"]
    assert lines[a["id"]]["name"] == a["name"]
    assert cart["total"]["amount"] == 2 * a["price"]["amount"] + b["price"]["amount"]

    # Setting a line replaces its quantity rather than adding to it.
    resp = await client.put(f"/api/v1/cart/items/{a['id']}", json={"quantity": 5}, headers=h)
    assert {x["product_id"]: x["quantity"] for x in resp.json()["items"]}[a["id"]] == 5

    resp = await client.delete(f"/api/v1/cart/items/{b['id']}", headers=h)
    assert resp.status_code == 200
    assert [x["product_id"] for x in resp.json()["items"]] == [a["id"]]
    again = await client.delete(f"/api/v1/cart/items/{b['id']}", headers=h)
    assert again.status_code == 200
    assert again.json() == resp.json()

    resp = await client.delete("/api/v1/cart", headers=h)
    assert resp.status_code == 204
    assert (await client.get("/api/v1/cart", headers=h)).json()["items"] == []


async def test_cart_errors(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client)
    h = customer.headers
    product = (await client.get("/api/v1/products", params={"limit": 1})).json()["items"][0]
    path = f"/api/v1/cart/items/{product['id']}"
    assert_problem(
        await client.put(f"/api/v1/cart/items/{uuid.uuid4()}", json={"quantity": 1}, headers=h),
        404,
    )
    for body in (
        {"quantity": 0},
        {"quantity": 100},
        {"quantity": "2"},
        {},
        {"quantity": 1, "price": 1},
    ):
        assert_problem(await client.put(path, json=body, headers=h), 422)
    for method, p in (
        ("GET", "/api/v1/cart"),
        ("PUT", path),
        ("DELETE", path),
        ("DELETE", "/api/v1/cart"),
    ):
        body = {"quantity": 1} if method == "PUT" else None
        assert_problem(await client.request(method, p, json=body), 401)


async def test_carts_are_per_customer(client: httpx.AsyncClient) -> None:
    alice = await new_customer(client, "Alice")
    bob = await new_customer(client, "Bob")
    product = (await client.get("/api/v1/products", params={"limit": 1})).json()["items"][0]
    await client.put(
        f"/api/v1/cart/items/{product['id']}", json={"quantity": 3}, headers=alice.headers
    )
    assert (await client.get("/api/v1/cart", headers=bob.headers)).json()["items"] == []
    # Identity headers a client sends are stripped: Bob cannot ask for Alice's cart.
    spoofed = {**bob.headers, "X-User-Id": alice.id, "X-User-Roles": "admin"}
    assert (await client.get("/api/v1/cart", headers=spoofed)).json()["items"] == []
