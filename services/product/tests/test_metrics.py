"""Reservation expiries are counted by the sweep that expires them, not by other releases."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from shop_product.settings import ProductSettings
from shopkit.testing import eventually, scraped

if TYPE_CHECKING:
    from conftest import Shop

EXPIRED = "shop_product_reservations_expired_total"


@pytest.fixture
def settings(make_settings: Any) -> ProductSettings:
    settings: ProductSettings = make_settings(
        reservation_ttl_seconds=1, reservation_sweep_interval_seconds=0.1
    )
    return settings


async def test_each_expired_reservation_counts_once(shop: Shop) -> None:
    before = await scraped(shop.client, EXPIRED)
    assert before is not None  # exported at 0 before the first expiry
    product = await shop.create_product(available=10)
    for order_id in ("lapsed-1", "lapsed-2", "released", "committed"):
        resp = await shop.reserve(order_id, [(product["id"], 1)])
        assert resp.status_code == 201, resp.text
    assert (await shop.act("released", "release")).status_code == 200
    assert (await shop.act("committed", "commit")).status_code == 200

    async def both_expired() -> bool:
        return await scraped(shop.client, EXPIRED) == before + 2

    assert await eventually(both_expired, timeout=10)
    statuses = {
        row["order_id"]: row["status"]
        for row in await shop.rows("SELECT order_id, status FROM reservations")
    }
    assert statuses == {
        "lapsed-1": "expired",
        "lapsed-2": "expired",
        "released": "released",
        "committed": "committed",
    }
    # Later sweeps find nothing more to expire, and count nothing more.
    await asyncio.sleep(0.5)
    assert await scraped(shop.client, EXPIRED) == before + 2
