"""The seeded bakery catalog, and the migrations matching the models."""

from __future__ import annotations

import asyncio
import contextlib

from shop_product.app import create_app
from shop_product.models import Base
from shop_product.seed import CATALOG
from shopkit.migrations import schema_drift
from shopkit.testing import running_app
from sqlalchemy import Column, Integer, MetaData, text


async def _count(app, sql: str) -> int:
    async with app.state.db.engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def test_seed_creates_a_bakery_catalog(make_settings):
    app = create_app(make_settings(seed_catalog=True))
    async with running_app(app) as client:
        products = []
        cursor = None
        while True:
            params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/api/v1/products", params=params)).json()
            products += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        categories = (await client.get("/api/v1/categories")).json()["items"]
        assert len(products) == len(CATALOG) >= 20
        assert len(categories) >= 4
        assert {"bread", "cakes", "cookies", "pastries", "coffee"} <= set(categories)
        assert {p["category"] for p in products} == set(categories)
        assert len({p["sku"] for p in products}) == len(products)
        for product in products:
            assert product["price"]["currency"] == "USD"
            assert 0 < product["price"]["amount"] < 100_00
            assert product["available"] > 0
            assert product["name"]
            assert product["description"]
        # Every unit on hand is accounted for by an 'initial' ledger row.
        assert await _count(app, "SELECT COUNT(*) FROM stock_ledger WHERE kind = 'initial'") == len(
            CATALOG
        )
        audit = (
            await client.get(
                "/internal/stock-audit",
                headers={"X-Internal-Token": app.state.internal_token},
            )
        ).json()["items"]
        assert len(audit) == len(CATALOG)
        for item in audit:
            assert item["stocked"] == item["on_hand"] == item["available"] > 0
        croissant = (await client.get("/api/v1/products", params={"q": "croissant"})).json()
        assert {p["name"] for p in croissant["items"]} >= {"Butter Croissant", "Almond Croissant"}


async def test_seed_is_not_repeated_on_restart(make_settings, tokens):
    settings = make_settings(seed_catalog=True)
    app = create_app(settings)
    async with running_app(app) as client:
        page = (await client.get("/api/v1/products", params={"limit": 1})).json()
        first = page["items"][0]
        resp = await client.put(
            f"/api/v1/products/{first['id']}/stock",
            json={"available": 0},
            headers=tokens.headers(roles=("admin",)),
        )
        assert resp.status_code == 200
    again = create_app(settings)
    async with running_app(again) as client:
        assert await _count(again, "SELECT COUNT(*) FROM products") == len(CATALOG)
        assert await _count(again, "SELECT COUNT(*) FROM stock_ledger") == len(CATALOG) + 1
        assert (await client.get(f"/api/v1/products/{first['id']}")).json()["available"] == 0


async def test_two_instances_starting_at_once_seed_once(make_settings, serve):
    # The database file exists and is migrated (as after a first deploy with seeding off): two
    # brand-new SQLite connections switching a fresh file to WAL at the same instant can fail in
    # the kit's connect hook, which is not what this test is about.
    async with running_app(create_app(make_settings(seed_catalog=False))):
        pass
    apps = [create_app(make_settings(seed_catalog=True)) for _ in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        await asyncio.gather(*(stack.enter_async_context(serve(app)) for app in apps))
        assert await _count(apps[0], "SELECT COUNT(*) FROM products") == len(CATALOG)
        assert await _count(apps[1], "SELECT COUNT(*) FROM stock_ledger") == len(CATALOG)


async def test_no_seed_when_disabled(make_settings):
    app = create_app(make_settings(seed_catalog=False))
    async with running_app(app):
        assert await _count(app, "SELECT COUNT(*) FROM products") == 0


async def test_migrations_match_models(make_settings):
    app = create_app(make_settings())
    async with running_app(app) as client:
        assert await schema_drift(app.state.db, Base.metadata) == []
        # The comparison can fail: a model column the migration lacks is reported.
        drifted = MetaData()
        for table in Base.metadata.tables.values():
            table.to_metadata(drifted)
        drifted.tables["products"].append_column(Column("weight_grams", Integer()))
        assert await schema_drift(app.state.db, drifted) != []
        assert await _count(app, "SELECT COUNT(*) FROM alembic_version") == 1
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"] == "ok"
