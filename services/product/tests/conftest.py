"""Fixtures: the real app on a real SQLite file, tokens checked against a real JWKS server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from shop_product.app import create_app
from shop_product.settings import ProductSettings
from shopkit.testing import TokenFactory, running_app, serve_app
from sqlalchemy import text

MakeSettings = Callable[..., ProductSettings]


@pytest.fixture
def make_settings(tmp_path: Path, jwks_url: str) -> MakeSettings:
    def make(**overrides: Any) -> ProductSettings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "user_url": jwks_url,
            "seed_catalog": False,
            "log_json": False,
            "log_level": "WARNING",
        }
        values.update(overrides)
        return ProductSettings(**values)

    return make


@pytest.fixture
def settings(make_settings: MakeSettings) -> ProductSettings:
    return make_settings()


@pytest.fixture
def app(settings: ProductSettings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(app) as client:
        yield client


class Shop:
    """The running service plus the credentials and direct database access tests need."""

    def __init__(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        tokens: TokenFactory,
        settings: ProductSettings,
    ) -> None:
        self.app = app
        self.client = client
        self.tokens = tokens
        self.settings = settings
        self.admin = tokens.headers(roles=("admin",))
        self.customer = tokens.headers(roles=("customer",))
        self.internal = {"X-Internal-Token": settings.internal_token.get_secret_value()}

    async def create_product(self, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "sku": "SKU-1",
            "name": "Plain Bagel",
            "description": "Boiled then baked.",
            "category": "bread",
            "price": {"amount": 250, "currency": "USD"},
            "available": 10,
        }
        body.update(fields)
        resp = await self.client.post("/api/v1/products", json=body, headers=self.admin)
        assert resp.status_code == 201, resp.text
        product: dict[str, Any] = resp.json()
        return product

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Read the service's own database directly, to check what was really stored."""
        async with self.app.state.db.engine.connect() as conn:
            result = await conn.execute(text(sql), params)
            return [dict(row) for row in result.mappings()]

    async def audit(self) -> dict[str, dict[str, int]]:
        resp = await self.client.get("/internal/stock-audit", headers=self.internal)
        assert resp.status_code == 200, resp.text
        return {item["product_id"]: item for item in resp.json()["items"]}

    async def assert_conserved(self) -> dict[str, dict[str, int]]:
        """The inventory invariant, from the audit route and from the raw columns."""
        items = await self.audit()
        for item in items.values():
            assert item["available"] >= 0, item
            assert item["reserved"] >= 0, item
            assert item["stocked"] == item["available"] + item["reserved"] + item["sold"], item
            assert item["reserved"] == item["reserved_by_reservations"], item
        negative = await self.rows(
            "SELECT id FROM products WHERE reserved < 0 OR on_hand < reserved"
        )
        assert negative == []
        return items

    async def reserve(self, order_id: str, items: list[tuple[str, int]]) -> httpx.Response:
        body = {
            "order_id": order_id,
            "items": [{"product_id": pid, "quantity": q} for pid, q in items],
        }
        return await self.client.post("/internal/reservations", json=body, headers=self.internal)

    async def act(self, order_id: str, action: str) -> httpx.Response:
        return await self.client.post(
            f"/internal/reservations/{order_id}/{action}", headers=self.internal
        )

    async def available(self, product_id: str) -> int:
        resp = await self.client.get(f"/api/v1/products/{product_id}")
        assert resp.status_code == 200, resp.text
        value: int = resp.json()["available"]
        return value


@pytest.fixture
async def shop(
    app: FastAPI, client: httpx.AsyncClient, tokens: TokenFactory, settings: ProductSettings
) -> Shop:
    return Shop(app, client, tokens, settings)


@pytest.fixture
def serve() -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[str]]:
    return serve_app
