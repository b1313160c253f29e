"""Reservation expiry under a skewed clock (RELIABILITY.md R17): the expiry time is computed and
checked on the product service's own clock only, so its clock being 5 minutes off (or the order
service's) cannot expire a reservation before its TTL has run on that one clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from shop_product.app import create_app, expire_reservations_once
from shopkit import clock
from shopkit.testing import TokenFactory, eventually, running_app

SKEW = 300


@pytest.fixture(autouse=True)
def true_clock() -> Iterator[None]:
    yield
    clock.set_offset(0)


@pytest.mark.parametrize("offset", [-SKEW, SKEW])
async def test_reservations_expire_by_their_own_clock(
    make_settings: Any, tokens: TokenFactory, offset: int
) -> None:
    ttl = 2
    settings = make_settings(
        reservation_ttl_seconds=ttl,
        reservation_sweep_interval_seconds=3600,  # swept by hand below
        fault_clock_offset_seconds=offset,
    )
    assert clock.offset() == offset
    app = create_app(settings)
    internal = {"X-Internal-Token": settings.internal_token.get_secret_value()}
    async with running_app(app) as client:
        # The admin's token comes from an issuer on the true clock: 5 minutes of skew either
        # way is within the verifier's leeway.
        resp = await client.post(
            "/api/v1/products",
            json={
                "sku": f"SKEW{offset}",
                "name": "Scone",
                "category": "pastries",
                "price": {"amount": 300, "currency": "USD"},
                "available": 5,
            },
            headers=tokens.headers(roles=("admin",)),
        )
        assert resp.status_code == 201, resp.text
        pid = resp.json()["id"]
        body = {"order_id": f"skewed-{offset}", "items": [{"product_id": pid, "quantity": 2}]}
        made = await client.post("/internal/reservations", json=body, headers=internal)
        assert made.status_code == 201, made.text

        # Stamped on the service's clock, not the machine's.
        expires_at = datetime.fromisoformat(made.json()["expires_at"])
        true_expiry = datetime.now(UTC) + timedelta(seconds=offset + ttl)
        assert abs((expires_at - true_expiry).total_seconds()) < 2, (expires_at, true_expiry)

        # Before the TTL has run on that clock, a sweep leaves it alone, whichever way the
        # clock is off (a check on the machine's clock would expire it at once for -300).
        assert await expire_reservations_once(app.state.db, settings) == 0
        got = await client.get(f"/internal/reservations/{body['order_id']}", headers=internal)
        assert got.json()["status"] == "active"
        held = await client.get(f"/api/v1/products/{pid}")
        assert held.json()["available"] == 3

        async def expired() -> bool:
            await expire_reservations_once(app.state.db, settings)
            got = await client.get(f"/internal/reservations/{body['order_id']}", headers=internal)
            return bool(got.json()["status"] == "expired")

        await asyncio.sleep(ttl / 2)
        assert not await expired(), "expired before its TTL"
        assert await eventually(expired, timeout=10, interval=0.2)
        assert (await client.get(f"/api/v1/products/{pid}")).json()["available"] == 5
