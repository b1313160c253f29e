"""Schema, settings, authentication and input validation of the order service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from shop_order.models import Base
from shop_order.settings import OrderSettings
from shopkit.migrations import schema_drift
from shopkit.testing import eventually

if TYPE_CHECKING:
    from conftest import OrderApi, Platform


async def test_migrations_match_the_models(orders: OrderApi) -> None:
    assert await schema_drift(orders.db, Base.metadata) == []


def test_settings_defaults_and_prefix() -> None:
    settings = OrderSettings(payment_url="http://127.0.0.1:1")
    assert OrderSettings.model_config.get("env_prefix") == "SWEETSLICE_ORDER_"
    assert settings.port == 8104
    assert settings.service_name == "order"
    assert settings.saga_timeout_seconds == 30.0
    assert settings.payment_url == "http://127.0.0.1:1"
    assert settings.effective_database_url.endswith("order/db.sqlite3")


async def test_routes_need_a_token(orders: OrderApi) -> None:
    for method, path in [
        ("POST", "/api/v1/orders"),
        ("GET", "/api/v1/orders"),
        ("GET", "/api/v1/orders/x"),
        ("POST", "/api/v1/orders/x/cancel"),
    ]:
        resp = await orders.client.request(method, path, json=orders.body())
        assert resp.status_code == 401, (method, path)
        assert resp.headers["www-authenticate"].startswith("Bearer")
    forged = {"Authorization": "Bearer not.a.token", "Idempotency-Key": "k"}
    resp = await orders.client.post("/api/v1/orders", headers=forged, json=orders.body())
    assert resp.status_code == 401


@pytest.mark.parametrize(
    "change",
    [
        {"status": "confirmed"},
        {"total": {"amount": 1, "currency": "USD"}},
        {"shipping_address": {"country": "gb"}},
        {"shipping_address": {"country": "GBR"}},
        {"shipping_address": {"name": ""}},
        {"shipping_address": {"line1": "x" * 201}},
        {"shipping_address": {"postal_code": "1" * 21}},
        {"shipping_address": {"extra": "field"}},
        {"payment_token": "t" * 201},
        {"payment_token": ""},
        {"payment_token": 12},
    ],
)
async def test_invalid_bodies_are_422_and_create_nothing(
    platform: Platform, orders: OrderApi, change: dict[str, Any]
) -> None:
    customer = await platform.customer()
    body = orders.body()
    for field, value in change.items():
        if field == "shipping_address":
            body["shipping_address"] = {**body["shipping_address"], **value}
        else:
            body[field] = value
    resp = await orders.place(customer, body=body)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["errors"]
    assert await orders.rows() == []


async def test_malformed_json_is_422(platform: Platform, orders: OrderApi) -> None:
    customer = await platform.customer()
    headers = {**customer.headers, "Idempotency-Key": "k", "Content-Type": "application/json"}
    for raw in (b"{", b"[]", b"null", b'{"payment_token": "tok_visa", "shipping_address": 1e999}'):
        resp = await orders.client.post("/api/v1/orders", headers=headers, content=raw)
        assert resp.status_code == 422, raw


async def test_health(orders: OrderApi) -> None:
    assert (await orders.client.get("/livez")).status_code == 200

    async def ready_now() -> bool:
        return (await orders.client.get("/readyz")).status_code == 200

    # the broker connection is made in the background after start
    assert await eventually(ready_now, timeout=10)
    ready = await orders.client.get("/readyz")
    assert set(ready.json()["checks"]) >= {"database", "broker", "jwks"}
