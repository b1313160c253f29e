"""Fixtures: the payment app in-process on a real SQLite file, with a real NATS server."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from shop_payment.app import create_app
from shop_payment.models import Base
from shop_payment.settings import PaymentSettings
from shopkit.http import INTERNAL_TOKEN_HEADER
from shopkit.testing import nats_server, running_app
from sqlalchemy import func, select

INTERNAL_TOKEN = "payment-tests-internal-token"


def make_settings(tmp_path: Path, nats_url: str, **overrides: object) -> PaymentSettings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'payment.sqlite3'}",
        "nats_url": nats_url,
        # Nothing listens here: payment must not need the user service.
        "user_url": "http://127.0.0.1:9",
        "internal_token": INTERNAL_TOKEN,
        "log_json": False,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return PaymentSettings.model_validate(values)


def charge_body(token: str = "tok_visa", amount: int = 2500, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "idempotency_key": f"key-{uuid.uuid4()}",
        "order_id": f"order-{uuid.uuid4()}",
        "customer_id": f"customer-{uuid.uuid4()}",
        "amount": {"amount": amount, "currency": "USD"},
        "payment_token": token,
    }
    body.update(overrides)
    return body


def refund_body(charge_id: str, amount: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "idempotency_key": f"refund-{uuid.uuid4()}",
        "charge_id": charge_id,
        "amount": {"amount": amount, "currency": "USD"},
    }
    body.update(overrides)
    return body


class Api:
    """The running app, its client, and direct reads of its database for assertions."""

    charge_body = staticmethod(charge_body)
    refund_body = staticmethod(refund_body)

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    async def charge(self, **kwargs: Any) -> dict[str, Any]:
        resp = await self.client.post("/internal/charges", json=charge_body(**kwargs))
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def rows(self, table: str) -> int:
        t = Base.metadata.tables[table]
        async with self.app.state.db.session() as session:
            total = await session.scalar(select(func.count()).select_from(t))
        return int(total or 0)


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nats_server(tmp_path_factory.mktemp("nats")) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, nats_url: str) -> PaymentSettings:
    return make_settings(tmp_path, nats_url)


@pytest.fixture
def app(settings: PaymentSettings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(app) as c:
        c.headers[INTERNAL_TOKEN_HEADER] = INTERNAL_TOKEN
        yield c


@pytest.fixture
def api(app: FastAPI, client: httpx.AsyncClient) -> Api:
    return Api(app, client)


ApiFactory = Callable[..., contextlib.AbstractAsyncContextManager[Api]]


@pytest.fixture
def api_factory(tmp_path: Path, nats_url: str) -> ApiFactory:
    """Another running app on the same database file, with some settings overridden."""

    @contextlib.asynccontextmanager
    async def start(**overrides: object) -> AsyncIterator[Api]:
        app = create_app(make_settings(tmp_path, nats_url, **overrides))
        async with running_app(app) as c:
            c.headers[INTERNAL_TOKEN_HEADER] = INTERNAL_TOKEN
            yield Api(app, c)

    return start
