"""Reservations that are neither committed nor released expire after the TTL."""

from __future__ import annotations

import asyncio

from shop_product.app import create_app, expire_reservations_once
from shopkit.testing import eventually, running_app
from sqlalchemy import text


async def test_background_sweep_expires_after_ttl(make_settings, tokens):
    settings = make_settings(reservation_ttl_seconds=1, reservation_sweep_interval_seconds=0.1)
    app = create_app(settings)
    internal = {"X-Internal-Token": settings.internal_token.get_secret_value()}
    async with running_app(app) as client:
        resp = await client.post(
            "/api/v1/products",
            json={
                "sku": "P1",
                "name": "Scone",
                "category": "pastries",
                "price": {"amount": 300, "currency": "USD"},
                "available": 4,
            },
            headers=tokens.headers(roles=("admin",)),
        )
        assert resp.status_code == 201
        pid = resp.json()["id"]
        body = {"order_id": "slow-order", "items": [{"product_id": pid, "quantity": 3}]}
        resp = await client.post("/internal/reservations", json=body, headers=internal)
        assert resp.status_code == 201
        assert (await client.get(f"/api/v1/products/{pid}")).json()["available"] == 1

        # Still held well before the TTL: no premature expiry.
        await asyncio.sleep(0.3)
        got = await client.get("/internal/reservations/slow-order", headers=internal)
        assert got.json()["status"] == "active"

        async def expired() -> bool:
            got = await client.get("/internal/reservations/slow-order", headers=internal)
            return bool(got.json()["status"] == "expired")

        assert await eventually(expired, timeout=5)
        assert (await client.get(f"/api/v1/products/{pid}")).json()["available"] == 4
        async with app.state.db.engine.connect() as conn:
            row = (await conn.execute(text("SELECT on_hand, reserved FROM products"))).one()
        assert tuple(row) == (4, 0)

        # An expired order id is closed: neither a commit nor a new reserve may take stock.
        commit = await client.post("/internal/reservations/slow-order/commit", headers=internal)
        assert commit.status_code == 409
        assert commit.json()["type"].endswith("/reservation-closed")
        again = await client.post("/internal/reservations", json=body, headers=internal)
        assert again.status_code == 409
        assert again.json()["type"].endswith("/reservation-closed")
        release = await client.post("/internal/reservations/slow-order/release", headers=internal)
        assert release.status_code == 200
        assert release.json()["status"] == "expired"
        audit = (await client.get("/internal/stock-audit", headers=internal)).json()["items"]
        assert audit == [
            {
                "product_id": pid,
                "stocked": 4,
                "sold": 0,
                "on_hand": 4,
                "reserved": 0,
                "available": 4,
                "reserved_by_reservations": 0,
            }
        ]


async def test_sweep_works_in_batches_and_leaves_others_alone(shop, make_settings):
    product = await shop.create_product(available=20)
    for i in range(7):
        assert (await shop.reserve(f"due-{i}", [(product["id"], 1)])).status_code == 201
    assert (await shop.reserve("committed", [(product["id"], 2)])).status_code == 201
    assert (await shop.act("committed", "commit")).status_code == 200
    assert (await shop.reserve("fresh", [(product["id"], 3)])).status_code == 201
    # Backdate the seven, as if their TTL had passed.
    async with shop.app.state.db.session() as session:
        await session.execute(
            text(
                "UPDATE reservations SET expires_at = '2000-01-01 00:00:00.000000' "
                "WHERE order_id LIKE 'due-%'"
            )
        )
    settings = make_settings(reservation_sweep_batch=3)
    assert await expire_reservations_once(shop.app.state.db, settings) == 7
    statuses = await shop.rows("SELECT order_id, status FROM reservations ORDER BY order_id")
    assert statuses == [
        {"order_id": "committed", "status": "committed"},
        *[{"order_id": f"due-{i}", "status": "expired"} for i in range(7)],
        {"order_id": "fresh", "status": "active"},
    ]
    items = await shop.assert_conserved()
    assert items[product["id"]]["reserved"] == 3
    assert items[product["id"]]["available"] == 15
    assert await expire_reservations_once(shop.app.state.db, settings) == 0
