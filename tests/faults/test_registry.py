"""The platform on Consul discovery, against the FAKE Consul of tests/fakes (no Consul server can
be installed here; tests/fakes/CONSUL.md says what the fake follows and where it differs).

- RELIABILITY.md R16: the registry is down for 30 s under load; the services keep calling the
  instances they last knew, and once it is back every instance registers again by itself.
- Two instances of product and of cart: one is killed (its Consul check goes critical and
  callers drop it), one is stopped gracefully (it deregisters on the way out); traffic keeps
  flowing to the other, and each comes back into rotation once restarted.

This module runs its own platform, with two instances of product and of cart."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from shopkit.launcher import PlatformConfig, free_ports

from tests.e2e.support import (
    ADMIN,
    RunningPlatform,
    consul_discovery_env,
    eventually,
    fresh_product,
    merged_env,
    new_customer,
    started_platform,
)
from tests.fakes.consul import FakeConsulProcess
from tests.faults.checker import check_history
from tests.faults.harness import (
    Figures,
    History,
    Shop,
    figures_key,
    kill9,
    restart,
    sigterm,
    size,
    suite_env,
)

REPLICATED = ("product", "cart")
# Fast enough that a test sees checks, reaping and re-registration within seconds.
CHECK_INTERVAL_SECONDS = 0.5
DEREGISTER_AFTER_SECONDS = 4.0
WAIT_SECONDS = 5.0
# Most failed calls a fault may cost (RELIABILITY.md R16: error rate <= 1 %).
MAX_ERROR_RATE = 0.01


@pytest.fixture(scope="module")
def consul(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeConsulProcess]:
    (port,) = free_ports(1)
    fake = FakeConsulProcess(port=port, log_path=tmp_path_factory.mktemp("consul") / "fake.log")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, consul: FakeConsulProcess
) -> Iterator[RunningPlatform]:
    env = suite_env()
    # Calls are not slowed here: a loaded machine must not turn a slow answer into a failure.
    del env["order"]["SWEETSLICE_ORDER_HTTP_TIMEOUT_SECONDS"]
    config = PlatformConfig.ephemeral(
        tmp_path_factory.mktemp("platform-consul"),
        admin=ADMIN,
        extra_env=merged_env(
            env,
            consul_discovery_env(
                check_interval=CHECK_INTERVAL_SECONDS,
                deregister_after=DEREGISTER_AFTER_SECONDS,
                wait=WAIT_SECONDS,
            ),
        ),
        replicas=dict.fromkeys(REPLICATED, 2),
        discovery="consul",
        consul_http_addr=consul.url,
    )
    with started_platform(config) as running:
        yield running


async def agent_services(consul: FakeConsulProcess) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as http:
        resp = await http.get(f"{consul.url}/v1/agent/services")
        resp.raise_for_status()
        found: dict[str, dict[str, Any]] = resp.json()
        return found


async def passing_ports(consul: FakeConsulProcess, service: str) -> set[int]:
    async with httpx.AsyncClient(timeout=5) as http:
        resp = await http.get(f"{consul.url}/v1/health/service/{service}", params={"passing": 1})
        resp.raise_for_status()
        return {int(entry["Service"]["Port"]) for entry in resp.json()}


def gateway_metric(platform: RunningPlatform, name: str, labels: dict[str, str]) -> float:
    text = httpx.get(platform.gateway + "/metrics", timeout=5).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found = line[len(name) + 1 : line.index("}")]
            if ",".join(sorted(found.split(","))) == wanted:
                total += float(line.rsplit(" ", 1)[1])
    return total


class Traffic:
    """Shoppers, catalog readers and cart changers, all through the gateway, until stopped."""

    def __init__(self, history: History, shop: Shop, customers: list[Any], product: str) -> None:
        self.history, self.shop, self.customers, self.product = history, shop, customers, product
        self.over = False

    async def _cart_changes(self, customer: Any) -> None:
        quantity = 0
        while not self.over:
            quantity = quantity % 5 + 1
            await self.history.send(
                "cart",
                "PUT",
                f"/api/v1/cart/items/{self.product}",
                json={"quantity": quantity},
                headers=customer.headers,
            )
            await asyncio.sleep(0.05)

    async def run(self) -> None:
        await asyncio.gather(
            self.shop.shoppers(
                self.customers[:3], until=lambda: self.over, pause=0.3, max_rounds=1000
            ),
            self.shop.read_catalog(
                until=lambda: self.over, concurrency=3, pause=0.02, max_reads=100_000
            ),
            *(self._cart_changes(c) for c in self.customers[3:]),
        )


def failures(calls: list[Any]) -> list[Any]:
    return [c for c in calls if c.status is None or c.status >= 500]


async def new_traffic(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Traffic:
    products = [
        await fresh_product(client, admin_headers, available=100_000, price=price)
        for price in (310, 120)
    ]
    customers = list(
        await asyncio.gather(*(new_customer(client, f"Registry {i}") for i in range(5)))
    )
    history = History(client)
    shop = Shop(history, [p["id"] for p in products])
    return Traffic(history, shop, customers, products[0]["id"])


async def test_r16_registry_down_for_30_seconds(
    platform: RunningPlatform,
    consul: FakeConsulProcess,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
    figures: Figures,
) -> None:
    key = figures_key("R16")
    outage_seconds = size(30, 30)
    traffic = await new_traffic(client, admin_headers)
    failed_refreshes = gateway_metric(
        platform,
        "shop_discovery_refresh_failures_total",
        {"service": "gateway", "peer": "product"},
    )
    timings: dict[str, float] = {}

    async def outage() -> None:
        try:
            traffic.history.phase = "before"
            await asyncio.sleep(3)
            traffic.history.phase = "outage"
            await asyncio.to_thread(consul.kill)
            await asyncio.sleep(outage_seconds)
            traffic.history.phase = "after"
            # Back empty, like an agent that lost its state: every instance must come back.
            await asyncio.to_thread(consul.restart)
            started = time.monotonic()
            await asyncio.to_thread(platform.call, platform.platform.wait_registered(60))
            timings["reregistered_seconds"] = time.monotonic() - started
            await asyncio.sleep(3)
        finally:
            traffic.over = True

    await asyncio.gather(outage(), traffic.run())
    history = traffic.history
    during = [c for c in history.calls if c.phase == "outage"]
    after = [c for c in history.calls if c.phase == "after"]
    bad = failures(during)
    figures.record(
        key,
        {
            "outage_seconds": outage_seconds,
            "requests_during_outage": len(during),
            "errors_during_outage": len(bad),
            "error_rate_during_outage": round(len(bad) / max(1, len(during)), 4),
            "errors_after_restart": len(failures(after)),
            "reregistered_seconds": round(timings["reregistered_seconds"], 2),
            "checkouts": history.counts(phase="outage"),
        },
    )
    assert len(during) > 200, "too little traffic during the outage to measure a rate"
    assert len(bad) <= MAX_ERROR_RATE * len(during), Counter(
        (c.op, c.status, c.problem) for c in bad
    )
    assert history.counts(phase="outage")["ok"] >= 3
    # The outage was felt: the gateway's watch of product failed while Consul was gone...
    assert (
        gateway_metric(
            platform,
            "shop_discovery_refresh_failures_total",
            {"service": "gateway", "peer": "product"},
        )
        > failed_refreshes
    )
    # ...and both instances came back into Consul and into the gateway's rotation.
    for service in REPLICATED:
        assert len(await passing_ports(consul, service)) == 2
    assert len(failures(after)) <= MAX_ERROR_RATE * max(1, len(after))
    await check_history(platform, internal, history, record=lambda f: figures.record(key, f))


async def test_a_killed_instance_leaves_rotation_and_a_stopped_one_deregisters(
    platform: RunningPlatform,
    consul: FakeConsulProcess,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
    figures: Figures,
) -> None:
    key = figures_key("registry-instances")
    traffic = await new_traffic(client, admin_headers)
    killed, stopped = "product-2", "cart-2"
    killed_port = platform.config.ports[killed]
    stopped_port = platform.config.ports[stopped]
    timings: dict[str, float] = {}

    async def faults() -> None:
        try:
            await asyncio.sleep(2)
            traffic.history.phase = "faults"
            await kill9(platform, killed)
            # Its /readyz check fails: Consul stops listing it as passing...
            timings["critical_seconds"] = await eventually(
                lambda: _absent(consul, "product", killed_port), within=10, what="killed left"
            )
            # ...and, critical past deregister-critical-after, drops it altogether.
            timings["reaped_seconds"] = await eventually(
                lambda: _unregistered(consul, killed_port),
                within=DEREGISTER_AFTER_SECONDS + 10,
                what="killed reaped",
            )
            (stopped_id,) = [
                i for i, s in (await agent_services(consul)).items() if s["Port"] == stopped_port
            ]
            await sigterm(platform, stopped)
            # A graceful stop deregisters on the way out (the instance says so; it is not left
            # for Consul to reap): gone the moment the process is.
            log = platform.platform.children[stopped].log_path.read_text(errors="replace")
            assert f"deregistered {stopped_id} from consul" in log
            assert stopped_id not in await agent_services(consul)
            await asyncio.sleep(2)
            await restart(platform, killed)
            await restart(platform, stopped)
            timings["back_seconds"] = await eventually(
                lambda: _both_back(consul, killed_port, stopped_port),
                within=20,
                what="restarted instances passing",
            )
            traffic.history.phase = "after"
            timings["served_when_back"] = await asyncio.to_thread(_served, platform, killed)
            await asyncio.sleep(3)
        finally:
            traffic.over = True

    await asyncio.gather(faults(), traffic.run())
    history = traffic.history
    during = [c for c in history.calls if c.phase == "faults"]
    bad = failures(during)
    figures.record(
        key,
        {
            "requests": len(during),
            "errors": len(bad),
            "error_rate": round(len(bad) / max(1, len(during)), 4),
            **{
                name: round(seconds, 2)
                for name, seconds in timings.items()
                if name.endswith("_seconds")
            },
        },
    )
    assert len(during) > 100
    assert len(bad) <= MAX_ERROR_RATE * len(during), Counter(
        (c.op, c.status, c.problem) for c in bad
    )
    # Traffic reached the restarted instance again: its own request counter moved.
    assert _served(platform, killed) > timings["served_when_back"]
    await check_history(platform, internal, history, record=lambda f: figures.record(key, f))


async def _absent(consul: FakeConsulProcess, service: str, port: int) -> bool:
    return port not in await passing_ports(consul, service)


async def _unregistered(consul: FakeConsulProcess, port: int) -> bool:
    return not any(s["Port"] == port for s in (await agent_services(consul)).values())


async def _both_back(consul: FakeConsulProcess, product_port: int, cart_port: int) -> bool:
    return product_port in await passing_ports(
        consul, "product"
    ) and cart_port in await passing_ports(consul, "cart")


def _served(platform: RunningPlatform, instance: str) -> float:
    """Requests under /api an instance has answered, from its own /metrics."""
    text = httpx.get(platform.config.url(instance) + "/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("shop_http_requests_total{") and 'route="/api/' in line
    )
