"""RELIABILITY.md's R11: a bad link between the gateway and the cart service. Connections are
reset, closes are held back, and the link is cut to 10 kB/s, while customers change carts,
check out and browse. The gateway must not hang on any of it: every answer within its upstream
timeout (plus a second), in-flight requests bounded and back to zero, and its open file
descriptors back to where they were once the link is healthy.

Beside it, slow links against a request's deadline (``X-Request-Budget-Ms``, docs/internal-api.md):
a checkout whose budget runs out mid-saga must end as it would without one, never half done."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
from shopkit.deadline import BUDGET_HEADER

from tests.e2e.support import (
    Customer,
    RunningPlatform,
    fresh_product,
    metric,
    new_customer,
    order_body,
)
from tests.faults.checker import check_history
from tests.faults.harness import (
    GATEWAY_UPSTREAM_TIMEOUT_SECONDS,
    ORDER_HTTP_TIMEOUT_SECONDS,
    PROXIED,
    Figures,
    History,
    Shop,
    figures_key,
    new_shop,
    size,
)
from tests.faults.toxiproxy import Toxic, Toxiproxy, bandwidth, latency, reset_peer, slow_close

STOCK = 100_000
LINK = PROXIED[("gateway", "cart")]
# Sockets the gateway may legitimately hold beyond its baseline once traffic stops: a few
# pooled keep-alive connections, in either direction, still waiting for their idle timeout.
FD_TOLERANCE = 6
# Keep-alive idle timeouts (uvicorn's and the client's, 5 s) close whatever the fault left.
FD_SETTLE_SECONDS = 20.0
# A cart line with a body the 10 kB/s link needs seconds to carry (the cart refuses the padding
# with 422 when it arrives in time; under the fault the gateway's timeout ends it first).
BULKY_BODY = {"quantity": 1, "padding": "x" * 60_000}


def _gateway_fds(platform: RunningPlatform) -> int:
    pid = platform.platform.children["gateway"].pid
    assert pid is not None, "the gateway is not running"
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _in_flight(internal: httpx.AsyncClient, platform: RunningPlatform) -> float:
    resp = await internal.get(platform.gateway + "/metrics")
    assert resp.status_code == 200, resp.text
    for line in resp.text.splitlines():
        if line.startswith("shop_http_in_flight_requests{") and 'service="gateway"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("the gateway exposes no shop_http_in_flight_requests gauge")


class Watch:
    """Samples the gateway's open descriptors and in-flight gauge while traffic runs."""

    def __init__(self, platform: RunningPlatform, internal: httpx.AsyncClient) -> None:
        self._platform = platform
        self._internal = internal
        self.fds: list[int] = []
        self.in_flight: list[float] = []

    async def run(self, interval: float = 0.2) -> None:
        while True:
            self.fds.append(_gateway_fds(self._platform))
            with contextlib.suppress(httpx.TransportError):
                self.in_flight.append(await _in_flight(self._internal, self._platform))
            await asyncio.sleep(interval)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Watch]:
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _traffic(
    history: History,
    shop: Shop,
    shoppers: Sequence[Customer],
    changers: Sequence[Customer],
    seconds: float,
) -> None:
    """For ``seconds``: checkouts (each refilling its cart first), cart changes and reads,
    catalog pages, and one bulky cart upload at a time."""
    ends = time.monotonic() + seconds

    def over() -> bool:
        return time.monotonic() > ends

    product_ids = shop.product_ids
    rng = random.Random(11)

    async def change(customer: Customer) -> None:
        while not over():
            product_id = rng.choice(product_ids)
            await history.send(
                "cart",
                "PUT",
                f"/api/v1/cart/items/{product_id}",
                json={"quantity": rng.randint(1, 3)},
                headers=customer.headers,
            )
            await history.send("cart", "GET", "/api/v1/cart", headers=customer.headers)
            await asyncio.sleep(0.05)

    async def bulky(customer: Customer) -> None:
        while not over():
            await history.send(
                "bulky",
                "PUT",
                f"/api/v1/cart/items/{product_ids[0]}",
                json=BULKY_BODY,
                headers=customer.headers,
            )
            await asyncio.sleep(0.2)

    await asyncio.gather(
        shop.shoppers(shoppers, until=over, pause=0.2),
        *(change(c) for c in changers[1:]),
        bulky(changers[0]),
        shop.read_catalog(until=over, pause=0.05),
    )


async def _settled_fds(platform: RunningPlatform, baseline: int) -> tuple[int, float]:
    """Open descriptors once they are back within the tolerance (or the last count seen when
    they never are), and the seconds it took."""
    started = time.monotonic()
    while True:
        count = _gateway_fds(platform)
        waited = time.monotonic() - started
        if count <= baseline + FD_TOLERANCE or waited > FD_SETTLE_SECONDS:
            return count, waited
        await asyncio.sleep(0.25)


async def test_r11_bad_link_between_gateway_and_cart(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
    toxiproxy: Toxiproxy,
    figures: Figures,
) -> None:
    began = time.monotonic()
    key = figures_key("R11")
    shoppers_count, changers_count = size(3, 8), size(3, 8)
    history, shop, people = await new_shop(
        client,
        admin_headers,
        shoppers_count + changers_count,
        label="Link",
        prices=(280, 95),
        stock=STOCK,
    )
    shoppers, changers = people[:shoppers_count], people[shoppers_count:]
    # Client tasks at once: shoppers, changers (one of them uploads bulky lines), two readers.
    concurrency = shoppers_count + changers_count + 2
    window = size(4.0, 20.0)

    # Without the fault, the same traffic: the descriptors it leaves open are the baseline.
    history.phase = "baseline"
    await _traffic(history, shop, shoppers, changers, size(3.0, 10.0))
    assert not [c for c in history.calls if c.outcome != "ok" and c.op != "bulky"], [
        (c.op, c.status, c.problem) for c in history.calls if c.outcome != "ok"
    ]
    fds_baseline = _gateway_fds(platform)
    in_flight_baseline = await _in_flight(internal, platform)

    faults: dict[str, list[Toxic]] = {
        # Every connection is reset as the cart's answer starts: the change was made, the
        # answer is lost (a retry of the gateway's meets the same fate).
        "reset": [reset_peer(0)],
        # The cart's closes reach the gateway 3 s late, so kept connections go stale.
        "slow-close": [slow_close(3000), slow_close(3000, stream="upstream")],
        "bandwidth": [bandwidth(10), bandwidth(10, stream="upstream")],
    }
    watch = Watch(platform, internal)
    async with watch.running():
        for phase, toxics in faults.items():
            history.phase = phase
            async with contextlib.AsyncExitStack() as stack:
                for toxic in toxics:
                    await stack.enter_async_context(toxiproxy.toxic(LINK, toxic))
                await _traffic(history, shop, shoppers, changers, window)
        history.phase = "after"
        await _traffic(history, shop, shoppers, changers, size(2.0, 5.0))
    fds_after, settled_after = await _settled_fds(platform, fds_baseline)
    in_flight_after = await _in_flight(internal, platform)

    bound = GATEWAY_UPSTREAM_TIMEOUT_SECONDS + 1.0
    hung = [c for c in history.calls if c.elapsed > bound]
    per_phase: dict[str, Any] = {}
    for phase in ("baseline", *faults, "after"):
        calls = [c for c in history.calls if c.phase == phase]
        per_phase[phase] = {
            "requests": len(calls),
            "not_ok": sum(c.outcome != "ok" for c in calls if c.op != "bulky"),
            "statuses": sorted({c.status or 0 for c in calls}),
            "max_s": round(max((c.elapsed for c in calls), default=0.0), 2),
        }
    figures.record(
        key,
        {
            "phases": per_phase,
            "checkout_outcomes": history.counts(),
            "hung_beyond_timeout_plus_1s": len(hung),
            "max_request_s": round(history.max_elapsed(), 2),
            "server_errors": len(history.server_errors()),
            "gateway_fds_baseline": fds_baseline,
            "gateway_fds_peak": max(watch.fds, default=0),
            "gateway_fds_after": fds_after,
            "fds_settled_after_s": round(settled_after, 1),
            "in_flight_peak": max(watch.in_flight, default=0.0),
            "in_flight_after": in_flight_after,
            "client_concurrency": concurrency,
        },
    )

    assert not hung, [(c.op, c.phase, c.status, round(c.elapsed, 2)) for c in hung]
    assert not history.server_errors(), history.server_errors()
    # Each fault met the traffic: resets lost answers, the slow link ran out the timeout.
    assert per_phase["reset"]["not_ok"] > 0, per_phase["reset"]
    assert any(
        c.phase == "bandwidth" and c.op == "bulky" and c.status == 504 for c in history.calls
    ), per_phase["bandwidth"]
    # Bounded: never more in flight than the client had out, and nothing left behind.
    assert watch.in_flight and max(watch.in_flight) <= in_flight_baseline + concurrency
    assert in_flight_after == in_flight_baseline
    assert fds_after <= fds_baseline + FD_TOLERANCE, (fds_baseline, fds_after, watch.fds[-10:])
    # Healthy again: the last round of traffic went through.
    after = [c for c in history.calls if c.phase == "after" and c.op != "bulky"]
    assert after and all(c.outcome == "ok" for c in after), [
        (c.op, c.status, c.problem) for c in after if c.outcome != "ok"
    ]

    result = await check_history(
        platform, internal, history, record=lambda f: figures.record(key, f)
    )
    figures.record(key, {"test_seconds": round(time.monotonic() - began, 1)})
    assert result["ok"] >= 1


async def test_a_budget_running_out_mid_checkout_leaves_no_half_done_saga(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
    toxiproxy: Toxiproxy,
    figures: Figures,
) -> None:
    """Checkouts sent straight to the order service with a short budget (as a gateway about to
    give up would), while a slow link makes the saga outlast it."""
    began = time.monotonic()
    key = figures_key("R11-deadline")
    products = [await fresh_product(client, admin_headers, available=STOCK, price=410)]
    people = list(
        await asyncio.gather(*(new_customer(client, f"Budget {i}") for i in range(size(3, 12))))
    )
    history = History(client)
    shop = Shop(history, [p["id"] for p in products])
    assert all(await asyncio.gather(*(shop.fill(c) for c in people)))
    order = platform.url("order")

    async def checkouts(budget_ms: int) -> list[Any]:
        async def one(customer: Customer) -> Any:
            idempotency_key = uuid.uuid4().hex
            return await history.send(
                "checkout",
                "POST",
                order + "/api/v1/orders",
                json=order_body(),
                headers={
                    **customer.headers,
                    "Idempotency-Key": idempotency_key,
                    BUDGET_HEADER: str(budget_ms),
                },
                key=idempotency_key,
                customer_id=customer.id,
            )

        return list(await asyncio.gather(*(one(c) for c in people)))

    # No time at all: the reads before any effect are not sent, and the order is forgotten.
    refused = {"service": "order", "peer": "user", "outcome": "deadline-exceeded"}
    refused_before = await metric(internal, order, "shop_peer_calls_total", refused)
    history.phase = "no-budget"
    none_left = await checkouts(0)
    refused_calls = await metric(internal, order, "shop_peer_calls_total", refused)

    # The charge is slower than the whole budget: once stock is reserved the saga goes on
    # with its own timeouts and confirms, long after the budget ran out.
    payment_delay = ORDER_HTTP_TIMEOUT_SECONDS * 0.7
    history.phase = "outlived"
    async with toxiproxy.toxic("order-payment", latency(int(payment_delay * 1000))):
        outlived = await checkouts(int(payment_delay * 1000 * 0.65))

    # The reservation itself is slower than the budget: it is cut, and the saga releases it
    # (that release is not bounded) and fails the order cleanly.
    history.phase = "cut"
    assert all(await asyncio.gather(*(shop.fill(c) for c in people)))
    async with toxiproxy.toxic("order-product", latency(500)):
        cut = await checkouts(300)

    figures.record(
        key,
        {
            "no_budget": sorted({(c.status or 0, c.problem.rsplit("/", 1)[-1]) for c in none_left}),
            "calls_not_sent": int(refused_calls - refused_before),
            "outlived": sorted({(c.status or 0, c.problem.rsplit("/", 1)[-1]) for c in outlived}),
            "outlived_min_s": round(min(c.elapsed for c in outlived), 2),
            "cut": sorted({(c.status or 0, c.problem.rsplit("/", 1)[-1]) for c in cut}),
            "server_errors": len(history.server_errors()),
        },
    )
    assert all(c.status == 503 and c.problem.endswith("/deadline-exceeded") for c in none_left), [
        (c.status, c.problem) for c in none_left
    ]
    assert refused_calls - refused_before == len(people)
    audit = (await internal.get(order + "/internal/orders/audit")).json()["items"]
    keys = {c.key for c in none_left}
    assert not [o for o in audit if o["idempotency_key"] in keys], "an order outlived its 503"
    # Confirmed although each took longer than its budget; a checkout whose reads alone took
    # the budget on a busy machine fails cleanly instead, and the checker judges it too.
    assert any(c.status == 201 and c.elapsed >= payment_delay for c in outlived), [
        (c.status, c.problem, round(c.elapsed, 2)) for c in outlived
    ]
    assert all(c.status in (201, 503) for c in outlived), [(c.status, c.problem) for c in outlived]
    assert all(c.status == 503 and c.outcome == "failed" for c in cut), [
        (c.status, c.problem) for c in cut
    ]
    assert not history.server_errors(), history.server_errors()

    result = await check_history(
        platform, internal, history, record=lambda f: figures.record(key, f)
    )
    figures.record(key, {"test_seconds": round(time.monotonic() - began, 1)})
    assert result["ok"] >= 1
