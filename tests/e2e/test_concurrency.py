"""Many customers racing for the last units: no oversell, one charge per confirmed order, and the
invariants of API.md checked in every service's own records afterwards."""

from __future__ import annotations

import asyncio

import httpx

from tests.e2e.invariants import check_invariants
from tests.e2e.support import (
    RunningPlatform,
    available,
    charges_for,
    fill_cart,
    fresh_product,
    key,
    new_customer,
    order_body,
)

CUSTOMERS = 12
UNITS = 5


async def test_last_units_are_never_oversold(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    product = await fresh_product(client, admin_headers, available=UNITS, price=999)
    customers = [await new_customer(client, f"Racer {i}") for i in range(CUSTOMERS)]
    for customer in customers:
        await fill_cart(client, customer, {product["id"]: 1})

    answers = await asyncio.gather(
        *(
            client.post("/api/v1/orders", json=order_body(), headers={**c.headers, **key()})
            for c in customers
        )
    )
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {201, 409}, [r.text for r in answers if r.status_code not in {201, 409}]
    confirmed = [r.json() for r in answers if r.status_code == 201]
    assert len(confirmed) == UNITS
    assert await available(client, product["id"]) == 0
    for order in confirmed:
        charges = await charges_for(internal, platform, order["id"])
        assert [c["amount"]["amount"] for c in charges if c["status"] == "succeeded"] == [999]

    counts = await check_invariants(platform, internal)
    assert counts["confirmed"] >= UNITS


async def test_concurrent_checkouts_of_the_same_customer_with_distinct_keys(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    product = await fresh_product(client, admin_headers, available=2)
    customer = await new_customer(client)
    await fill_cart(client, customer, {product["id"]: 1})
    answers = await asyncio.gather(
        *(
            client.post("/api/v1/orders", json=order_body(), headers={**customer.headers, **key()})
            for _ in range(4)
        )
    )
    assert all(r.status_code in {201, 400, 409} for r in answers), [r.text for r in answers]
    assert await available(client, product["id"]) >= 0
    await check_invariants(platform, internal)
