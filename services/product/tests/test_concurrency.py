"""Concurrent checkouts against the app behind a real uvicorn server: never oversell."""

from __future__ import annotations

import asyncio
import random

import httpx
from shop_product.app import create_app


async def test_twenty_concurrent_reservations_for_five_units(shop, make_settings, serve):
    product = await shop.create_product(sku="LAST-FIVE", name="Last Five Eclairs", available=5)
    # A second app on the same database file, served over real TCP, as another replica would be.
    async with (
        serve(create_app(make_settings())) as url,
        httpx.AsyncClient(base_url=url, headers=shop.internal, timeout=30) as http,
    ):

        async def reserve(i: int) -> httpx.Response:
            body = {
                "order_id": f"order-{i}",
                "items": [{"product_id": product["id"], "quantity": 1}],
            }
            return await http.post("/internal/reservations", json=body)

        answers = await asyncio.gather(*(reserve(i) for i in range(20)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] * 5 + [409] * 15
    for resp in answers:
        if resp.status_code == 409:
            assert resp.json()["type"].endswith("/insufficient-stock")
            assert resp.json()["products"][0]["product_id"] == product["id"]
    assert await shop.available(product["id"]) == 0
    stored = await shop.rows("SELECT on_hand, reserved FROM products")
    assert stored == [{"on_hand": 5, "reserved": 5}]
    active = await shop.rows("SELECT COUNT(*) AS n FROM reservations WHERE status = 'active'")
    assert active == [{"n": 5}]
    lines = await shop.rows("SELECT SUM(quantity) AS q FROM reservation_lines")
    assert lines == [{"q": 5}]
    items = await shop.assert_conserved()
    assert items[product["id"]] == {
        "product_id": product["id"],
        "stocked": 5,
        "sold": 0,
        "on_hand": 5,
        "reserved": 5,
        "available": 0,
        "reserved_by_reservations": 5,
    }


async def test_mixed_concurrent_traffic_conserves_stock(shop, make_settings, serve):
    """Multi-line orders in both product orders, replays, commits and releases, all at once."""
    a = await shop.create_product(sku="A", name="Croissant", available=12)
    b = await shop.create_product(sku="B", name="Danish", available=9)
    rng = random.Random(7)
    async with (
        serve(create_app(make_settings())) as url,
        httpx.AsyncClient(base_url=url, headers=shop.internal, timeout=30) as http,
    ):

        async def checkout(i: int) -> int:
            lines = [(a["id"], rng.randint(1, 3)), (b["id"], rng.randint(1, 3))]
            if i % 2:
                lines.reverse()
            body = {
                "order_id": f"mixed-{i}",
                "items": [{"product_id": p, "quantity": q} for p, q in lines],
            }
            first, replay = await asyncio.gather(
                http.post("/internal/reservations", json=body),
                http.post("/internal/reservations", json=body),
            )
            assert {first.status_code, replay.status_code} <= {200, 201, 409}
            if 201 not in (first.status_code, replay.status_code):
                return 0
            action = "commit" if i % 3 else "release"
            resp = await http.post(f"/internal/reservations/mixed-{i}/{action}")
            assert resp.status_code == 200, resp.text
            return 1

        placed = await asyncio.gather(*(checkout(i) for i in range(30)))
    assert sum(placed) >= 1
    items = await shop.assert_conserved()
    assert items[a["id"]]["reserved"] == 0
    assert items[b["id"]]["reserved"] == 0
    # Every order that got a reservation got exactly one, and sold units match committed lines.
    for product in (a, b):
        committed = await shop.rows(
            "SELECT COALESCE(SUM(l.quantity), 0) AS q FROM reservation_lines l "
            "JOIN reservations r ON r.order_id = l.order_id "
            "WHERE r.status = 'committed' AND l.product_id = :p",
            p=product["id"],
        )
        assert items[product["id"]]["sold"] == committed[0]["q"]
