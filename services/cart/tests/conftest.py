"""Fixtures: the cart app in-process on a real SQLite file, tokens checked against a real JWKS
server, and the REAL product service behind uvicorn on a loopback port as the catalog peer."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from shop_cart.app import create_app
from shop_cart.settings import CartSettings
from shop_product.app import create_app as create_product_app
from shop_product.settings import ProductSettings
from shopkit.http import INTERNAL_TOKEN_HEADER
from shopkit.testing import TokenFactory, free_port, running_app, serve_app
from sqlalchemy import text

INTERNAL_TOKEN = "cart-tests-internal-token"


class ProductPeer:
    """The product service, served for real so the cart reaches it over HTTP."""

    def __init__(self, app: FastAPI, admin: dict[str, str]) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._admin = admin
        self._stack: contextlib.AsyncExitStack | None = None

    async def start(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        await self._stack.enter_async_context(serve_app(self.app, port=self.port))

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = None

    async def add(self, name: str = "Sourdough Loaf", price: int = 650) -> str:
        body = {
            "sku": f"SKU-{uuid.uuid4().hex[:12]}",
            "name": name,
            "description": "",
            "category": "bread",
            "price": {"amount": price, "currency": "USD"},
            "available": 100,
        }
        async with httpx.AsyncClient(base_url=self.url, trust_env=False) as http:
            resp = await http.post("/api/v1/products", json=body, headers=self._admin)
        assert resp.status_code == 201, resp.text
        product_id: str = resp.json()["id"]
        return product_id

    async def set_price(self, product_id: str, price: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, trust_env=False) as http:
            resp = await http.patch(
                f"/api/v1/products/{product_id}",
                json={"price": {"amount": price, "currency": "USD"}},
                headers=self._admin,
            )
        assert resp.status_code == 200, resp.text


class Shopper:
    """The cart app's client plus credentials and direct reads of the cart database."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, tokens: TokenFactory) -> None:
        self.app = app
        self.client = client
        self.tokens = tokens
        self.internal = {INTERNAL_TOKEN_HEADER: INTERNAL_TOKEN}

    def customer(self, user_id: str | None = None) -> tuple[str, dict[str, str]]:
        uid = user_id or str(uuid.uuid4())
        return uid, self.tokens.headers(uid)

    async def put(self, headers: dict[str, str], product_id: str, quantity: Any) -> httpx.Response:
        return await self.client.put(
            f"/api/v1/cart/items/{product_id}", json={"quantity": quantity}, headers=headers
        )

    async def internal_cart(self, customer_id: str) -> dict[str, Any]:
        resp = await self.client.get(f"/internal/carts/{customer_id}", headers=self.internal)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def sql(self, statement: str, **params: Any) -> list[dict[str, Any]]:
        async with self.app.state.db.engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return [dict(row) for row in result.mappings()] if result.returns_rows else []


@pytest.fixture
async def product(
    tmp_path: Path, jwks_url: str, tokens: TokenFactory
) -> AsyncIterator[ProductPeer]:
    settings = ProductSettings(
        data_dir=tmp_path / "product",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'product.sqlite3'}",
        user_url=jwks_url,
        internal_token=INTERNAL_TOKEN,
        seed_catalog=False,
        log_json=False,
        log_level="WARNING",
    )
    peer = ProductPeer(create_product_app(settings), tokens.headers(roles=("admin",)))
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


def cart_settings(
    tmp_path: Path, jwks_url: str, product_url: str, **overrides: Any
) -> CartSettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "cart",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'cart.sqlite3'}",
        "user_url": jwks_url,
        "product_url": product_url,
        "internal_token": INTERNAL_TOKEN,
        "http_timeout_seconds": 2.0,
        "log_json": False,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return CartSettings.model_validate(values)


@pytest.fixture
def app(tmp_path: Path, jwks_url: str, product: ProductPeer) -> FastAPI:
    return create_app(cart_settings(tmp_path, jwks_url, product.url))


@pytest.fixture
async def shop(app: FastAPI, tokens: TokenFactory) -> AsyncIterator[Shopper]:
    async with running_app(app) as client:
        yield Shopper(app, client, tokens)
