"""The checker of RELIABILITY.md: after the drain, the client's history of checkouts is held
against what the services recorded (orders, charges and refunds, reservations, stock, events)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.e2e.invariants import check_invariants
from tests.e2e.support import RunningPlatform
from tests.faults.events import check_events
from tests.faults.harness import History

NO_MONEY = {"charges": 0, "charged": 0, "refunds": 0, "refunded": 0}


async def _get(internal: httpx.AsyncClient, url: str) -> Any:
    resp = await internal.get(url)
    assert resp.status_code == 200, f"{url}: {resp.status_code} {resp.text}"
    return resp.json()


async def _reservation(
    internal: httpx.AsyncClient, platform: RunningPlatform, order_id: str
) -> str | None:
    resp = await internal.get(platform.url("product") + f"/internal/reservations/{order_id}")
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    status: str = resp.json()["status"]
    return status


async def check_history(
    platform: RunningPlatform,
    internal: httpx.AsyncClient,
    history: History,
    *,
    settle_seconds: float = 60,
    record: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Drains, asserts the invariants of every service, then judges each checkout of the history:

    1. every ``ok`` checkout is confirmed and charged exactly once;
    2. every ``failed`` one has no net charge and no active reservation (or left no order);
    3. an ``unknown`` one is either of those, never both, never charged twice;
    4. and 5. money and stock are conserved (``check_invariants``);
    6. every published event was handled once in effect (``check_events``).

    Returns the figures (also handed to ``record`` before anything is asserted on them, so a
    failing run still reports them); assertion errors name every violation found."""
    totals = await check_invariants(
        platform, internal, settle_seconds=settle_seconds, drain_failed=True
    )
    orders = (await _get(internal, platform.url("order") + "/internal/orders/audit"))["items"]
    ledger = (await _get(internal, platform.url("payment") + "/internal/ledger"))["orders"]
    by_key = {(o["customer_id"], o["idempotency_key"]): o for o in orders}

    checkouts = history.of("checkout")
    violations: list[str] = []
    lost = double_charges = unknown_confirmed = unknown_failed = refunded = 0
    for call in checkouts:
        order = by_key.get((call.customer_id, call.key))
        if order is None:
            # Refused before anything was done (the row is discarded): fine unless it was ok.
            if call.outcome == "ok":
                lost += 1
                violations.append(f"ok checkout {call.key} left no order")
            continue
        money = ledger.get(order["id"], NO_MONEY)
        total = order["total"]["amount"]
        reservation = await _reservation(internal, platform, order["id"])
        if order["status"] == "failed" and money["refunded"] > 0:
            refunded += 1  # a charge that landed for a failed checkout, given back
        if money["charges"] > 1:
            double_charges += 1
            violations.append(f"order {order['id']} charged {money['charges']} times: {money}")
        confirmed = (
            order["status"] == "confirmed"
            and money["charges"] == 1
            and money["charged"] == total
            and money["refunded"] == 0
            and reservation == "committed"
        )
        unwound = (
            order["status"] == "failed"
            and money["charged"] == money["refunded"]
            and reservation != "active"
        )
        if call.outcome == "ok" and not confirmed:
            lost += order["status"] != "confirmed"
            violations.append(f"ok checkout not confirmed once: {order} {money} {reservation}")
        elif call.outcome == "failed" and not unwound:
            violations.append(f"failed checkout not unwound: {order} {money} {reservation}")
        elif call.outcome == "unknown":
            if confirmed:
                unknown_confirmed += 1
            elif unwound:
                unknown_failed += 1
            else:
                violations.append(f"unknown checkout half done: {order} {money} {reservation}")

    # Orders of this history's customers that no request of the history explains.
    customers = {c.customer_id for c in checkouts}
    keys = {(c.customer_id, c.key) for c in checkouts}
    strays = [
        o
        for o in orders
        if o["customer_id"] in customers and (o["customer_id"], o["idempotency_key"]) not in keys
    ]
    violations.extend(f"order from no request of the history: {o}" for o in strays)

    counts = history.counts()
    figures: dict[str, Any] = {
        "checkouts": len(checkouts),
        **counts,
        "unknown_confirmed": unknown_confirmed,
        "unknown_failed": unknown_failed,
        "failed_with_charge_refunded": refunded,
        "double_charges": double_charges,
        "lost_orders": lost,
        "non_terminal_after_drain": 0,  # check_invariants waited for it or failed
        "orders_in_platform": totals["orders"],
        "violations": len(violations),
    }
    if record is not None:
        record(figures)
    assert not violations, "\n".join(violations[:20])
    # 6. every published event was handled once in effect, across the whole platform.
    figures.update(
        await check_events(platform, internal, settle_seconds=settle_seconds, record=record)
    )
    return figures
