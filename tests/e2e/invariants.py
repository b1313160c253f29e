"""API.md's invariants, checked in the services' own records (their internal APIs)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx

from tests.e2e.support import RunningPlatform


async def _get(internal: httpx.AsyncClient, url: str) -> Any:
    resp = await internal.get(url)
    assert resp.status_code == 200, f"{url}: {resp.status_code} {resp.text}"
    return resp.json()


# Failed orders whose compensation is still running: a reservation may be held, a late charge
# may still have to be refunded (docs/internal-api.md, order).
COMPENSATING_STEPS = frozenset({"releasing", "charge-unknown", "voiding"})


async def check_invariants(
    platform: RunningPlatform,
    internal: httpx.AsyncClient,
    *,
    settle_seconds: float = 30,
    drain_failed: bool = False,
) -> dict[str, int]:
    """Asserts the five invariants once no order is pending (with ``drain_failed``, also once
    no failed order is still being compensated); returns a few counts."""
    deadline = time.monotonic() + settle_seconds
    while True:
        orders = (await _get(internal, platform.url("order") + "/internal/orders/audit"))["items"]
        pending = [
            o
            for o in orders
            if o["status"] == "pending"
            or (drain_failed and o["status"] == "failed" and o["saga_step"] in COMPENSATING_STEPS)
        ]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    # 3. no order stays pending once its dependencies are reachable
    assert not pending, f"orders still pending: {[(o['id'], o['saga_step']) for o in pending]}"

    # 1. stock is never negative and is conserved
    stock = (await _get(internal, platform.url("product") + "/internal/stock-audit"))["items"]
    for row in stock:
        assert row["available"] >= 0, row
        assert row["reserved"] == row["reserved_by_reservations"], row
        assert row["stocked"] == row["available"] + row["reserved"] + row["sold"], row

    # 2. and 4. charges match orders, and money is conserved
    ledger = await _get(internal, platform.url("payment") + "/internal/ledger")
    by_order: dict[str, Any] = ledger["orders"]
    confirmed_total = 0
    for order in orders:
        money = by_order.get(order["id"], {"charges": 0, "charged": 0, "refunds": 0, "refunded": 0})
        total = order["total"]["amount"]
        if order["status"] == "confirmed":
            confirmed_total += total
            assert money["charges"] == 1 and money["charged"] == total, (order, money)
            assert money["refunded"] == 0, (order, money)
        elif order["status"] == "failed":
            assert money["charged"] == money["refunded"], (order, money)
        elif order["status"] == "cancelled":
            assert money["charges"] == 1 and money["charged"] == total, (order, money)
            assert money["refunds"] == 1 and money["refunded"] == total, (order, money)
    order_ids = {o["id"] for o in orders}
    assert set(by_order) <= order_ids, "charges for orders the order service does not know"
    assert ledger["charged"] - ledger["refunded"] == confirmed_total

    # 5. one order per idempotency key per customer
    keys = Counter((o["customer_id"], o["idempotency_key"]) for o in orders)
    assert max(keys.values(), default=1) == 1
    return {
        "orders": len(orders),
        "confirmed": sum(o["status"] == "confirmed" for o in orders),
        "products": len(stock),
    }
