"""The order service against the real user, product, cart and payment services.

Each peer is its own app served by uvicorn on a loopback port, with its own SQLite file under
``tmp_path``; a real NATS server carries the events. The order app runs in-process (with its
lifespan, so its outbox relay and recovery loop run too) and reaches its peers over HTTP.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from shop_order.app import create_app
from shop_order.models import Order, outbox
from shop_order.settings import OrderSettings
from shopkit.db import Database
from shopkit.http import INTERNAL_TOKEN_HEADER
from shopkit.testing import free_port, nats_server, running_app, serve_app
from sqlalchemy import select

INTERNAL_TOKEN = "order-tests-internal-token"
ADMIN_EMAIL = "admin@sweetslice.test"
ADMIN_PASSWORD = "admin password 123"
PASSWORD = "customer password 123"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Crumb Street",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}
_sku = itertools.count(1)


def checkout_body(token: str = "tok_visa", **address: str) -> dict[str, Any]:
    return {"payment_token": token, "shipping_address": {**ADDRESS, **address}}


class FaultProxy:
    """A real HTTP proxy in front of a peer that answers 503 to the requests ``failing``
    selects (a fault injector, as the reliability harness's proxy is; not a fake of the peer)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.failing: Callable[[str, str], bool] = lambda _method, _path: False
        self.seen: list[tuple[str, str, int]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.failing(request.method, request.path):
            self.seen.append((request.method, request.path, 503))
            return web.json_response({"title": "injected fault"}, status=503)
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            ) as resp,
        ):
            body = await resp.read()
            self.seen.append((request.method, request.path, resp.status))
            return web.Response(body=body, status=resp.status, content_type=resp.content_type)


@contextlib.asynccontextmanager
async def fault_proxy(upstream: str) -> AsyncIterator[tuple[str, FaultProxy]]:
    proxy = FaultProxy(upstream)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", proxy
    finally:
        await runner.cleanup()


@dataclass
class Customer:
    id: str
    email: str
    headers: dict[str, str]


class Platform:
    """The running peers, and helpers that act and observe through their real APIs."""

    def __init__(self, tmp_path: Path, nats_url: str, http: httpx.AsyncClient) -> None:
        self.tmp_path = tmp_path
        self.nats_url = nats_url
        self.http = http
        self.user_url = ""
        self.product_url = ""
        self.cart_url = ""
        self.payment_url = ""
        self.admin_headers: dict[str, str] = {}
        self.internal = {INTERNAL_TOKEN_HEADER: INTERNAL_TOKEN}

    def common(self, name: str) -> dict[str, Any]:
        return {
            "data_dir": self.tmp_path,
            "database_url": f"sqlite+aiosqlite:///{self.tmp_path / f'{name}.sqlite3'}",
            "internal_token": INTERNAL_TOKEN,
            "nats_url": self.nats_url,
            "log_json": False,
            "log_level": "WARNING",
        }

    def order_settings(self, **overrides: Any) -> OrderSettings:
        values: dict[str, Any] = {
            **self.common("order"),
            "user_url": self.user_url,
            "product_url": self.product_url,
            "cart_url": self.cart_url,
            "payment_url": self.payment_url,
            "http_timeout_seconds": 3.0,
            "recovery_interval_seconds": 0.1,
            "commit_backoff_seconds": 0.01,
        }
        values.update(overrides)
        return OrderSettings.model_validate(values)

    async def login(self, email: str, password: str) -> dict[str, str]:
        resp = await self.http.post(
            f"{self.user_url}/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert resp.status_code == 200, resp.text
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}

    async def token_for(self, user_id: str) -> dict[str, str]:
        """A token signed with the user service's own (development) key for any subject."""
        jwks = (await self.http.get(f"{self.user_url}/.well-known/jwks.json")).json()
        kid = jwks["keys"][0]["kid"]
        pem = (self.tmp_path / "user" / "jwt-ed25519.pem").read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
        now = int(time.time())
        claims = {
            "sub": user_id,
            "email": "ghost@example.com",
            "roles": ["customer"],
            "iss": "sweetslice-user",
            "aud": "sweetslice",
            "iat": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"}

    async def customer(self) -> Customer:
        email = f"c-{uuid.uuid4().hex[:12]}@example.com"
        resp = await self.http.post(
            f"{self.user_url}/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "name": "Test Customer"},
        )
        assert resp.status_code == 201, resp.text
        return Customer(resp.json()["id"], email, await self.login(email, PASSWORD))

    async def product(self, *, price: int = 350, stock: int = 10, name: str = "") -> str:
        n = next(_sku)
        resp = await self.http.post(
            f"{self.product_url}/api/v1/products",
            headers=self.admin_headers,
            json={
                "sku": f"TEST-{n}-{uuid.uuid4().hex[:6]}",
                "name": name or f"Test Pastry {n}",
                "description": "made for a test",
                "category": "pastries",
                "price": {"amount": price, "currency": "USD"},
                "available": stock,
            },
        )
        assert resp.status_code == 201, resp.text
        product_id: str = resp.json()["id"]
        return product_id

    async def available(self, product_id: str) -> int:
        resp = await self.http.get(f"{self.product_url}/api/v1/products/{product_id}")
        assert resp.status_code == 200, resp.text
        available: int = resp.json()["available"]
        return available

    async def put_in_cart(self, customer: Customer, product_id: str, quantity: int) -> None:
        resp = await self.http.put(
            f"{self.cart_url}/api/v1/cart/items/{product_id}",
            headers=customer.headers,
            json={"quantity": quantity},
        )
        assert resp.status_code == 200, resp.text

    async def cart_lines(self, customer: Customer) -> dict[str, int]:
        resp = await self.http.get(f"{self.cart_url}/api/v1/cart", headers=customer.headers)
        assert resp.status_code == 200, resp.text
        return {i["product_id"]: i["quantity"] for i in resp.json()["items"]}

    async def reservation(self, order_id: str) -> dict[str, Any] | None:
        resp = await self.http.get(
            f"{self.product_url}/internal/reservations/{order_id}", headers=self.internal
        )
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def reserve(self, order_id: str, items: list[tuple[str, int]]) -> dict[str, Any]:
        resp = await self.http.post(
            f"{self.product_url}/internal/reservations",
            headers=self.internal,
            json={
                "order_id": order_id,
                "items": [{"product_id": p, "quantity": q} for p, q in items],
            },
        )
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def charge(
        self, order_id: str, customer_id: str, amount: int, *, key: str | None = None
    ) -> dict[str, Any]:
        resp = await self.http.post(
            f"{self.payment_url}/internal/charges",
            headers=self.internal,
            json={
                "idempotency_key": key or f"order-{order_id}-charge",
                "order_id": order_id,
                "customer_id": customer_id,
                "amount": {"amount": amount, "currency": "USD"},
                "payment_token": "tok_visa",
            },
        )
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def ledger(self) -> dict[str, Any]:
        resp = await self.http.get(f"{self.payment_url}/internal/ledger", headers=self.internal)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def charges(self, order_id: str) -> list[dict[str, Any]]:
        resp = await self.http.get(
            f"{self.payment_url}/internal/charges",
            params={"order_id": order_id},
            headers=self.internal,
        )
        assert resp.status_code == 200, resp.text
        items: list[dict[str, Any]] = resp.json()["items"]
        return items

    async def stock_audit(self) -> list[dict[str, Any]]:
        resp = await self.http.get(
            f"{self.product_url}/internal/stock-audit", headers=self.internal
        )
        assert resp.status_code == 200, resp.text
        items: list[dict[str, Any]] = resp.json()["items"]
        return items


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    from shop_cart.app import create_app as create_cart_app
    from shop_cart.settings import CartSettings
    from shop_payment.app import create_app as create_payment_app
    from shop_payment.settings import PaymentSettings
    from shop_product.app import create_app as create_product_app
    from shop_product.settings import ProductSettings
    from shop_user.app import create_app as create_user_app
    from shop_user.settings import UserSettings

    with nats_server(tmp_path / "nats") as nats_url:
        async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient(timeout=10) as http:
            p = Platform(tmp_path, nats_url, http)
            user_settings = UserSettings.model_validate(
                {
                    **p.common("user"),
                    "user_url": "http://127.0.0.1:9",
                    "admin_email": ADMIN_EMAIL,
                    "admin_password": ADMIN_PASSWORD,
                    "argon2_time_cost": 1,
                    "argon2_memory_cost_kib": 64,
                }
            )
            p.user_url = await stack.enter_async_context(serve_app(create_user_app(user_settings)))
            product_settings = ProductSettings.model_validate(
                {**p.common("product"), "user_url": p.user_url, "seed_catalog": False}
            )
            p.product_url = await stack.enter_async_context(
                serve_app(create_product_app(product_settings))
            )
            payment_settings = PaymentSettings.model_validate(
                {**p.common("payment"), "user_url": p.user_url}
            )
            p.payment_url = await stack.enter_async_context(
                serve_app(create_payment_app(payment_settings))
            )
            cart_settings = CartSettings.model_validate(
                {**p.common("cart"), "user_url": p.user_url, "product_url": p.product_url}
            )
            p.cart_url = await stack.enter_async_context(serve_app(create_cart_app(cart_settings)))
            p.admin_headers = await p.login(ADMIN_EMAIL, ADMIN_PASSWORD)
            yield p


class OrderApi:
    """The order app in-process, and direct reads of its database."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    body = staticmethod(checkout_body)

    @property
    def db(self) -> Database:
        db: Database = self.app.state.db
        return db

    async def place(
        self, customer: Customer, key: str | None = None, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        headers = dict(customer.headers)
        headers["Idempotency-Key"] = key or uuid.uuid4().hex
        return await self.client.post(
            "/api/v1/orders", headers=headers, json=body or checkout_body()
        )

    async def rows(self) -> list[Order]:
        async with self.db.session() as session:
            return list((await session.execute(select(Order))).scalars())

    async def row(self, order_id: str) -> Order:
        async with self.db.session() as session:
            order = await session.get(Order, order_id)
        assert order is not None
        return order

    async def payment_token_of(self, order_id: str) -> str:
        async with self.db.session() as session:
            token = await session.scalar(select(Order.payment_token).where(Order.id == order_id))
        return str(token)

    async def outbox_rows(self) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            rows = (await session.execute(select(outbox))).mappings().all()
        return [dict(r) for r in rows]


OrderFactory = Callable[..., contextlib.AbstractAsyncContextManager[OrderApi]]
ProxyFactory = Callable[[str], contextlib.AbstractAsyncContextManager[tuple[str, FaultProxy]]]


@pytest.fixture
def proxy() -> ProxyFactory:
    return fault_proxy


@pytest.fixture
def order_app(platform: Platform) -> OrderFactory:
    @contextlib.asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[OrderApi]:
        app = create_app(platform.order_settings(**overrides))
        async with running_app(app) as client:
            yield OrderApi(app, client)

    return factory


@pytest.fixture
async def orders(order_app: OrderFactory) -> AsyncIterator[OrderApi]:
    async with order_app() as api:
        yield api
