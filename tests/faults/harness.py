"""The fault suite's client and its hands on the platform: every request it sends is recorded
with its outcome (ok / failed / unknown), and faults are dealt to processes the suite started."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from shopkit.launcher import Child

from tests.e2e.support import Customer, RunningPlatform, fresh_product, new_customer, order_body

Outcome = Literal["ok", "failed", "unknown"]
# Answers the gateway makes itself when it could not get one from the service: whether the
# service acted on the request is not known.
GATEWAY_UNKNOWN = ("upstream-timeout", "upstream-unavailable")


@dataclass
class Call:
    op: str  # "checkout", "cart", "catalog"
    phase: str
    started: float  # time.monotonic()
    elapsed: float
    status: int | None  # None: no answer at all (the client's timeout, a broken connection)
    outcome: Outcome
    problem: str = ""
    detail: str = ""
    key: str = ""
    customer_id: str = ""
    order_id: str | None = None
    retry_after: str = ""  # the answer's Retry-After header, if it had one


def classify(status: int | None, problem: str) -> Outcome:
    if status is None or status in {500, 502, 504} or problem.endswith(GATEWAY_UNKNOWN):
        return "unknown"
    return "ok" if status < 300 else "failed"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class History:
    """Everything the client sent, in the order the answers came."""

    client: httpx.AsyncClient
    phase: str = "setup"
    calls: list[Call] = field(default_factory=list)

    async def send(
        self,
        op: str,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        key: str = "",
        customer_id: str = "",
    ) -> Call:
        phase = self.phase
        started = time.monotonic()
        status: int | None = None
        body: Any = None
        retry_after = ""
        try:
            resp = await self.client.request(method, url, json=json, headers=headers)
        except httpx.TransportError:
            pass
        else:
            status = resp.status_code
            retry_after = resp.headers.get("retry-after", "")
            with contextlib.suppress(ValueError):
                body = resp.json()
        elapsed = time.monotonic() - started
        problem = detail = ""
        order_id: str | None = None
        if isinstance(body, dict):
            if status is not None and status >= 400:
                problem, detail = str(body.get("type", "")), str(body.get("detail", ""))
                order_id = body.get("order_id")
            elif op == "checkout":
                order_id = body.get("id")
        call = Call(
            op,
            phase,
            started,
            elapsed,
            status,
            classify(status, problem),
            problem,
            detail,
            key,
            customer_id,
            order_id,
            retry_after,
        )
        self.calls.append(call)
        return call

    def of(self, op: str, phase: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.op == op and (phase is None or c.phase == phase)]

    def counts(self, op: str = "checkout", phase: str | None = None) -> dict[str, int]:
        calls = self.of(op, phase)
        return {o: sum(c.outcome == o for c in calls) for o in ("ok", "failed", "unknown")}

    def max_elapsed(self) -> float:
        return max((c.elapsed for c in self.calls), default=0.0)

    def server_errors(self) -> list[Call]:
        """Answers no fault excuses: a 500 is a bug whatever a peer did."""
        return [c for c in self.calls if c.status == 500]


class Shop:
    """Checkouts the way a customer makes them: fill the cart, then place the order."""

    def __init__(self, history: History, product_ids: Sequence[str]) -> None:
        self.history = history
        self.product_ids = list(product_ids)
        # Customers whose cart is known to hold the lines: a failed checkout keeps the cart
        # (API.md), so the next one goes straight to the order service, the fault's target.
        self._filled: set[str] = set()

    async def fill(self, customer: Customer) -> bool:
        """One of each product in the cart; False when the cart service could not do it."""
        for product_id in self.product_ids:
            filled = await self.history.send(
                "cart",
                "PUT",
                f"/api/v1/cart/items/{product_id}",
                json={"quantity": 1},
                headers=customer.headers,
            )
            if filled.outcome != "ok":
                return False
        self._filled.add(customer.id)
        return True

    async def checkout(self, customer: Customer) -> Call | None:
        """None when the cart could not be filled (no checkout was attempted)."""
        if customer.id not in self._filled and not await self.fill(customer):
            return None
        idempotency_key = uuid.uuid4().hex
        call = await self.history.send(
            "checkout",
            "POST",
            "/api/v1/orders",
            json=order_body(),
            headers={**customer.headers, "Idempotency-Key": idempotency_key},
            key=idempotency_key,
            customer_id=customer.id,
        )
        if call.outcome != "failed":
            self._filled.discard(customer.id)  # cleared by the order, or maybe
        return call

    async def shoppers(
        self,
        customers: Sequence[Customer],
        *,
        rounds: int | None = None,
        until: Callable[[], bool] | None = None,
        pause: float = 0.0,
        max_rounds: int = 100,
    ) -> None:
        """One worker per customer, each checking out one after the other: ``rounds`` times, or
        until ``until()`` holds (never more than ``max_rounds``, so a stuck fault cannot spin)."""

        async def worker(customer: Customer) -> None:
            for done in range(max_rounds):
                if rounds is not None and done >= rounds:
                    return
                if until is not None and until():
                    return
                await self.checkout(customer)
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(worker(c) for c in customers))

    async def read_catalog(
        self,
        count: int | None = None,
        *,
        until: Callable[[], bool] | None = None,
        concurrency: int = 2,
        pause: float = 0.0,
        max_reads: int = 1000,
    ) -> list[float]:
        """Latencies of catalog pages read through the gateway: ``count`` of them, or as many as
        fit until ``until()`` holds (never more than ``max_reads``)."""
        latencies: list[float] = []

        def more() -> bool:
            if len(latencies) >= max_reads or (until is not None and until()):
                return False
            return count is None or len(latencies) < count

        async def reader() -> None:
            while more():
                call = await self.history.send("catalog", "GET", "/api/v1/products?limit=20")
                latencies.append(call.elapsed)
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(reader() for _ in range(concurrency)))
        return latencies


async def new_shop(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    customers: int,
    *,
    label: str,
    prices: Sequence[int] = (350, 120),
    stock: int = 10_000,
) -> tuple[History, Shop, list[Customer]]:
    """A test's own products (every checkout buys one of each; stock plentiful unless the
    test is about contention), its customers, and a fresh history."""
    products = [
        await fresh_product(client, admin, available=stock, price=price) for price in prices
    ]
    people = await asyncio.gather(*(new_customer(client, f"{label} {i}") for i in range(customers)))
    history = History(client)
    return history, Shop(history, [p["id"] for p in products]), list(people)


async def until_checkout_ok(shop: Shop, customer: Customer, *, within: float) -> float:
    """Seconds until a checkout succeeds again (bounded); raises when none did."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        call = await shop.checkout(customer)
        if call is not None and call.outcome == "ok":
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise AssertionError(f"no checkout succeeded within {within:.0f}s of the fault's end")


# ---------------------------------------------------------------------- faults on processes


def _child(platform: RunningPlatform, name: str) -> Child:
    return platform.platform.children[name]


async def _in_platform(platform: RunningPlatform, coro: Any, timeout: float = 90) -> Any:
    """Runs a coroutine on the platform's own loop without blocking the test's loop, so the
    client's requests keep flowing while a process is killed or started."""
    return await asyncio.to_thread(platform.call, coro, timeout)


async def kill9(platform: RunningPlatform, name: str) -> int:
    """SIGKILL the service's process and reap it; returns the pid it had."""
    child = _child(platform, name)

    async def kill() -> int:
        proc = child.proc
        assert proc is not None and proc.returncode is None, f"{name} is not running"
        proc.kill()
        await proc.wait()
        child.state = "stopped"
        return proc.pid

    pid: int = await _in_platform(platform, kill())
    return pid


async def restart(platform: RunningPlatform, name: str) -> int:
    """Start the service again and wait until it is ready; returns its new pid."""
    await asyncio.to_thread(platform.start_service, name)
    pid = _child(platform, name).pid
    assert pid is not None
    return pid


async def sigterm(platform: RunningPlatform, name: str) -> float:
    """SIGTERM the process and wait for it to exit (SIGKILL after the launcher's grace period);
    returns the seconds it took to go."""
    child = _child(platform, name)
    started = time.monotonic()
    await _in_platform(platform, child.stop())
    assert child.proc is not None and child.proc.returncode is not None
    return time.monotonic() - started


@contextlib.asynccontextmanager
async def stopped(platform: RunningPlatform, name: str) -> AsyncIterator[int]:
    """SIGSTOP the service for the body of the block; SIGCONT whatever happens."""
    pid = _child(platform, name).pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


class StockSampler:
    """Samples the product service's stock audit while a fault runs: available stock must never
    be negative at any sampled moment, not only after the drain."""

    def __init__(self, internal: httpx.AsyncClient, url: str, product_ids: Sequence[str]) -> None:
        self._internal = internal
        self._url = url + "/internal/stock-audit"
        self._ids = set(product_ids)
        self.samples = 0
        self.negative: list[dict[str, Any]] = []

    async def run(self, interval: float = 0.5) -> None:
        while True:
            try:
                resp = await self._internal.get(self._url, timeout=2)
            except httpx.TransportError:
                pass  # the service may be the one stopped or killed
            else:
                if resp.status_code == 200:
                    self.samples += 1
                    self.negative.extend(
                        row
                        for row in resp.json()["items"]
                        if row["product_id"] in self._ids and row["available"] < 0
                    )
            await asyncio.sleep(interval)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[StockSampler]:
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# ---------------------------------------------------------------------- the suite's platform

# `make test` runs every fault at a small count; `make chaos` sets this to "full" for
# RELIABILITY.md's sizes and turns the figures into docs/reliability.md.
FULL_SCALE = os.environ.get("SWEETSLICE_FAULT_SCALE", "small") == "full"


def size(small: int, full: int) -> int:
    """A count of the fault suite: ``small`` in `make test`, ``full`` in `make chaos`."""
    return full if FULL_SCALE else small


def figures_key(row: str) -> str:
    """Where a fault row's figures are filed: "R1-small" in `make test`, "R1" in `make chaos`."""
    return row if FULL_SCALE else f"{row}-small"


ORDER_HTTP_TIMEOUT_SECONDS = 1.0
BREAKER_OPEN_SECONDS = 2.0
GATEWAY_UPSTREAM_TIMEOUT_SECONDS = 4.0
# Longer than any answer the gateway can take, so a request the platform lets hang shows as
# such in the history instead of being cut short by the client.
CLIENT_TIMEOUT_SECONDS = 20.0
# Edges of the call graph that go through Toxiproxy: (caller, callee) -> proxy name.
PROXIED = {
    ("order", "payment"): "order-payment",
    ("order", "product"): "order-product",
    # R11: cart changes cross a proxy between the gateway and the cart service.
    ("gateway", "cart"): "gateway-cart",
}


def suite_env() -> dict[str, dict[str, str]]:
    """PlatformConfig.extra_env of the suite: short timeouts and breaker periods so faults
    show within seconds, and compensation that settles within the drain."""
    return {
        # One client address drives the whole suite; the limiter has its own tests.
        "gateway": {
            "SWEETSLICE_GATEWAY_RATE_LIMIT_PER_SECOND": "10000",
            "SWEETSLICE_GATEWAY_RATE_LIMIT_BURST": "10000",
            "SWEETSLICE_GATEWAY_UPSTREAM_TIMEOUT_SECONDS": str(GATEWAY_UPSTREAM_TIMEOUT_SECONDS),
        },
        "order": {
            "SWEETSLICE_ORDER_HTTP_TIMEOUT_SECONDS": str(ORDER_HTTP_TIMEOUT_SECONDS),
            "SWEETSLICE_ORDER_RESILIENCE__BREAKER_OPEN_SECONDS": str(BREAKER_OPEN_SECONDS),
            "SWEETSLICE_ORDER_RESILIENCE__BREAKER_HALF_OPEN_CALLS": "1",
            "SWEETSLICE_ORDER_RECOVERY_INTERVAL_SECONDS": "0.5",
            "SWEETSLICE_ORDER_SAGA_TIMEOUT_SECONDS": "10",
            # A charge that lands late is looked for this long before a failed order is closed.
            "SWEETSLICE_ORDER_CHARGE_SETTLE_SECONDS": "3",
        },
    }


@dataclass
class Figures:
    """The measured figures of each fault, kept in a JSON file as soon as they are known."""

    path: Path | None
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    tests: dict[str, str] = field(default_factory=dict)  # test name -> passed / failed / ...

    def record(self, fault: str, values: dict[str, Any]) -> None:
        self.faults.setdefault(fault, {}).update(values)
        self._write()

    def verdict(self, test: str, outcome: str) -> None:
        self.tests[test] = outcome
        self._write()

    def _write(self) -> None:
        if self.path is not None:
            doc = {"faults": self.faults, "tests": self.tests}
            self.path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")

    def lines(self) -> list[str]:
        return [
            f"{fault}: " + ", ".join(f"{k}={_short(v)}" for k, v in values.items())
            for fault, values in self.faults.items()
        ]


def _short(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
