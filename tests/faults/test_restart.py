"""RELIABILITY.md R14: SIGTERM to a service under load while a second instance runs. The
instance finishes what it has in flight and stops taking new work; callers (the gateway, and the
services calling product and cart) move new requests to the other instance. No client sees a
5xx while instances go and come back.

This module runs its own platform, with two instances of product and of cart."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from shopkit.launcher import PlatformConfig

from tests.e2e.support import ADMIN, RunningPlatform, fresh_product, new_customer, started_platform
from tests.faults.checker import check_history
from tests.faults.harness import (
    Figures,
    History,
    Shop,
    figures_key,
    restart,
    sigterm,
    size,
    suite_env,
)

REPLICATED = ("product", "cart")
FIGURES_KEY = figures_key("R14")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    env = suite_env()
    # The suite's 1 s call timeout is for faults of latency; here calls are not slowed, and a
    # loaded machine must not turn a slow answer into a failed checkout.
    del env["order"]["SWEETSLICE_ORDER_HTTP_TIMEOUT_SECONDS"]
    config = PlatformConfig.ephemeral(
        tmp_path_factory.mktemp("platform-r14"),
        admin=ADMIN,
        extra_env=env,
        replicas=dict.fromkeys(REPLICATED, 2),
    )
    with started_platform(config) as running:
        yield running


async def test_r14_sigterm_under_load_with_a_second_instance(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
    figures: Figures,
) -> None:
    began = time.monotonic()
    products = [
        await fresh_product(client, admin_headers, available=100_000, price=price)
        for price in (250, 90)
    ]
    customers = list(
        await asyncio.gather(*(new_customer(client, f"Restart {i}") for i in range(6)))
    )
    history = History(client)
    shop = Shop(history, [p["id"] for p in products])
    # Every instance of each replicated service is terminated once, one after the other.
    targets = [name for service in REPLICATED for name in platform.config.instances(service)]
    rounds = size(1, 3)
    sigterms: list[tuple[str, float, float, int | None]] = []  # name, at, seconds, exit code
    over = False

    async def terminate_each() -> None:
        nonlocal over
        try:
            for _ in range(rounds):
                for name in targets:
                    await asyncio.sleep(1.5)
                    at = time.monotonic()
                    seconds = await sigterm(platform, name)
                    proc = platform.platform.children[name].proc
                    sigterms.append((name, at, seconds, proc.returncode if proc else None))
                    # Down for a moment with its twin carrying the load, then back.
                    await asyncio.sleep(1.0)
                    await restart(platform, name)
            await asyncio.sleep(1.0)
        finally:
            over = True

    async def cart_changes(customer_index: int) -> None:
        # PUTs through the gateway to cart, which asks product for the price: both hops meet
        # the terminated instances.
        customer = customers[customer_index]
        quantity = 0
        while not over:
            quantity = quantity % 5 + 1
            await history.send(
                "cart",
                "PUT",
                f"/api/v1/cart/items/{products[0]['id']}",
                json={"quantity": quantity},
                headers=customer.headers,
            )
            await asyncio.sleep(0.05)

    history.phase = "restarts"
    await asyncio.gather(
        terminate_each(),
        shop.shoppers(customers[:4], until=lambda: over, pause=0.3, max_rounds=1000),
        shop.read_catalog(until=lambda: over, concurrency=4, pause=0.01, max_reads=100_000),
        cart_changes(4),
        cart_changes(5),
    )
    during = [c for c in history.calls if c.phase == "restarts"]
    errors = [c for c in during if c.status is None or c.status >= 500]
    # Requests the gateway had in hand at the moment a SIGTERM went out.
    in_flight = [
        c for c in during for _, at, _, _ in sigterms if c.started < at < c.started + c.elapsed
    ]
    figures.record(
        FIGURES_KEY,
        {
            "sigterms": len(sigterms),
            "exit_seconds_max": round(max(s for _, _, s, _ in sigterms), 2),
            "exit_codes": sorted({code or 0 for *_, code in sigterms}),
            "requests": len(during),
            "requests_in_flight_at_sigterm": len(in_flight),
            "in_flight_not_ok": sum(c.outcome != "ok" for c in in_flight),
            "server_errors_5xx": len(errors),
            "checkouts": history.counts(phase="restarts"),
        },
    )
    assert len(sigterms) == rounds * len(targets)
    # It went by itself within the grace period (uvicorn re-raises the SIGTERM it handled once
    # it has shut down: -15), not by the launcher's SIGKILL (-9).
    assert all(code in {0, -signal.SIGTERM} for *_, code in sigterms), sigterms
    assert not errors, Counter((c.op, c.status, c.problem, c.detail) for c in errors)
    assert in_flight, "no request was in flight at any SIGTERM: the test proved nothing"
    assert all(c.outcome == "ok" for c in in_flight), [
        (c.op, c.status, c.problem) for c in in_flight if c.outcome != "ok"
    ]
    assert history.counts(phase="restarts")["ok"] >= 4

    await check_history(
        platform, internal, history, record=lambda f: figures.record(FIGURES_KEY, f)
    )
    figures.record(FIGURES_KEY, {"test_seconds": round(time.monotonic() - began, 1)})
