"""Several instances of a service: spread calls, pass over one that refuses connections, and the
launcher's replicas that make them."""

from __future__ import annotations

import collections
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from shopkit.discovery import (
    FAILURES_TO_EJECT,
    DnsDiscovery,
    Pool,
    StaticDiscovery,
    UnknownService,
    split_addresses,
)
from shopkit.http import PeerUnavailable, ServiceClient, new_client_session
from shopkit.launcher import Platform, PlatformConfig, service_of
from shopkit.testing import free_port


def test_addresses_are_split_and_trimmed() -> None:
    assert split_addresses(" http://a:1/, http://b:2 ,,") == ("http://a:1", "http://b:2")
    assert split_addresses("") == ()


async def test_instances_are_taken_in_turn_and_an_unreachable_one_is_passed_over() -> None:
    discovery = StaticDiscovery({"cart": "http://a:1,http://b:2,http://c:3", "user": ""})
    picks = [await discovery.resolve("cart") for _ in range(6)]
    assert collections.Counter(picks) == {"http://a:1": 2, "http://b:2": 2, "http://c:3": 2}
    assert discovery.instance_count("cart") == 3
    assert discovery.instance_count("user") == 0
    with pytest.raises(UnknownService):
        await discovery.resolve("user")

    discovery.unreachable("cart", "http://b:2")
    discovery.unreachable("cart", "http://elsewhere:9")  # not one of its instances: ignored
    assert {await discovery.resolve("cart") for _ in range(6)} == {"http://a:1", "http://c:3"}


async def test_when_every_instance_failed_one_is_still_tried() -> None:
    discovery = StaticDiscovery({"cart": "http://a:1,http://b:2"})
    discovery.unreachable("cart", "http://a:1")
    discovery.unreachable("cart", "http://b:2")
    assert await discovery.resolve("cart") in {"http://a:1", "http://b:2"}
    # A caller that just failed on b goes to a, which failed longer ago and may be back.
    assert {await discovery.resolve("cart", avoid=["http://b:2"]) for _ in range(4)} == {
        "http://a:1"
    }
    assert await discovery.resolve("cart", avoid=["http://a:1", "http://b:2"]) in {
        "http://a:1",
        "http://b:2",
    }


async def test_ejection_ends_after_its_period() -> None:
    discovery = StaticDiscovery({"cart": "http://a:1,http://b:2"}, eject_seconds=0.0)
    discovery.unreachable("cart", "http://a:1")
    assert {await discovery.resolve("cart") for _ in range(4)} == {"http://a:1", "http://b:2"}


@pytest.fixture
async def live_peer() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.method)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/thing", record)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


class Peer(ServiceClient):
    peer = "peer"


async def test_a_call_refused_by_one_instance_goes_to_the_next(
    live_peer: tuple[str, list[str]],
) -> None:
    live, seen = live_peer
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    discovery = StaticDiscovery({"peer": f"{dead},{live}"})
    async with new_client_session() as session:
        client = Peer(session, discovery, timeout=2, internal_token="t")
        # A plain write too: a refused connection means the request was never received.
        for _ in range(4):
            resp = await client.request("POST", "/thing", json_body={})
            assert resp.status == 200
    assert seen == ["POST"] * 4

    # With no instance left to try, the refusal is the peer's failure.
    async with new_client_session() as session:
        client = Peer(session, StaticDiscovery({"peer": dead}), timeout=2, internal_token="t")
        with pytest.raises(PeerUnavailable, match="ClientConnectorError"):
            await client.request("POST", "/thing", json_body={})


def test_replicas_get_their_own_ports_and_callers_get_every_instance(tmp_path: Path) -> None:
    config = PlatformConfig.ephemeral(tmp_path, replicas={"product": 3, "cart": 2})
    assert config.instances("product") == ["product", "product-2", "product-3"]
    assert config.instances("user") == ["user"]
    names = config.instances()
    assert "cart-2" in names and "gateway" in names and len(names) == 7 + 3
    assert len({config.ports[n] for n in names}) == len(names)
    assert service_of("product-3") == "product" and service_of("gateway") == "gateway"

    product_urls = config.env_for("order")["SWEETSLICE_ORDER_PRODUCT_URL"].split(",")
    assert product_urls == [config.url(n) for n in config.instances("product")]
    second = config.env_for("product-2")
    assert second["SWEETSLICE_PRODUCT_PORT"] == str(config.ports["product-2"])
    assert (
        second["SWEETSLICE_PRODUCT_DATA_DIR"]
        == config.env_for("product")["SWEETSLICE_PRODUCT_DATA_DIR"]
    )
    platform = Platform(config)
    assert platform.children["product-3"].argv[-1] == "shop_product.main"

    with pytest.raises(ValueError, match="replicas"):
        PlatformConfig.ephemeral(tmp_path, replicas={"gateway": 2})
    with pytest.raises(ValueError, match="replicas"):
        PlatformConfig.ephemeral(tmp_path, replicas={"cart": 0})


# Kubernetes DNS: names resolved by the service itself, the last answer kept when DNS fails.


class FlakyResolver:
    """Answers from a table a test edits; a name mapped to None fails like an unreachable DNS."""

    def __init__(self, table: dict[str, list[str] | None]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        found = self.table[host]
        if found is None:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return found


async def test_dns_spreads_calls_over_every_address_of_a_name_and_keeps_the_last_answer() -> None:
    resolver = FlakyResolver({"cart.shop.svc": ["10.0.0.1", "10.0.0.2"]})
    dns = DnsDiscovery({"cart": "http://cart.shop.svc:8103"}, resolver=resolver, caller="t")
    # Before the first lookup the name itself is used: the HTTP client can still resolve it.
    assert await dns.resolve("cart") == "http://cart.shop.svc:8103"
    await dns.refresh()
    assert resolver.asked == [("cart.shop.svc", 8103)]
    assert {await dns.resolve("cart") for _ in range(4)} == {
        "http://10.0.0.1:8103",
        "http://10.0.0.2:8103",
    }
    assert dns.instance_count("cart") == 2

    # A pod went away and another came: the next lookup says so.
    resolver.table["cart.shop.svc"] = ["10.0.0.2", "10.0.0.3"]
    await dns.refresh()
    assert {await dns.resolve("cart") for _ in range(4)} == {
        "http://10.0.0.2:8103",
        "http://10.0.0.3:8103",
    }

    # DNS down: the last answer stays in use (RELIABILITY.md R16), and the failure is counted.
    resolver.table["cart.shop.svc"] = None
    failures = REGISTRY.get_sample_value(
        "shop_discovery_refresh_failures_total", {"service": "t", "peer": "cart"}
    )
    await dns.refresh()
    assert {await dns.resolve("cart") for _ in range(4)} == {
        "http://10.0.0.2:8103",
        "http://10.0.0.3:8103",
    }
    assert (
        REGISTRY.get_sample_value(
            "shop_discovery_refresh_failures_total", {"service": "t", "peer": "cart"}
        )
        == (failures or 0) + 1
    )
    assert (
        REGISTRY.get_sample_value("shop_discovery_instances", {"service": "t", "peer": "cart"}) == 2
    )


async def test_dns_leaves_addresses_and_https_names_alone_and_resolves_for_real() -> None:
    resolver = FlakyResolver({})
    dns = DnsDiscovery(
        {"a": "http://127.0.0.1:1,http://[::1]:2", "b": "https://pay.example:443"},
        resolver=resolver,
    )
    await dns.refresh()
    # Nothing to look up in an address; over https the certificate names the host.
    assert resolver.asked == []
    assert {await dns.resolve("a") for _ in range(2)} == {"http://127.0.0.1:1", "http://[::1]:2"}

    # The real resolver of this machine: localhost is a loopback address.
    real = DnsDiscovery({"c": "http://localhost:8103"})
    await real.start()
    try:
        found = {await real.resolve("c") for _ in range(4)}
    finally:
        await real.close()
    assert found <= {"http://127.0.0.1:8103", "http://[::1]:8103"} and found


async def test_a_changed_pool_forgets_instances_that_left_and_keeps_ejections_of_the_rest() -> None:
    pool = Pool(["http://a:1", "http://b:2"], eject_seconds=60)
    pool.eject("http://a:1")
    assert {pool.pick() for _ in range(4)} == {"http://b:2"}
    pool.replace(["http://a:1", "http://b:2", "http://c:3"])
    assert {pool.pick() for _ in range(6)} == {"http://b:2", "http://c:3"}
    pool.replace(["http://c:3"])
    pool.replace(["http://a:1", "http://c:3"])
    # a left and came back: its old ejection went with it.
    assert {pool.pick() for _ in range(4)} == {"http://a:1", "http://c:3"}
    assert Pool().pick() is None


def test_an_instance_is_ejected_after_a_run_of_failures_and_a_success_breaks_the_run() -> None:
    pool = Pool(["http://a:1", "http://b:2"])
    for _ in range(FAILURES_TO_EJECT - 1):
        assert not pool.answered("http://b:2", ok=False)
    assert pool.answered("http://b:2", ok=True) is False  # the run is broken: count again
    for _ in range(FAILURES_TO_EJECT - 1):
        assert not pool.answered("http://b:2", ok=False)
    assert {pool.pick() for _ in range(4)} == {"http://a:1", "http://b:2"}
    assert pool.answered("http://b:2", ok=False)  # the fifth in a row
    assert {pool.pick() for _ in range(4)} == {"http://a:1"}
    assert not pool.answered("http://elsewhere:9", ok=False)


@pytest.fixture
async def broken_peer() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def fail(request: web.Request) -> web.Response:
        seen.append(request.method)
        return web.json_response({"broken": True}, status=500)

    app = web.Application()
    app.router.add_route("*", "/thing", fail)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_a_peer_instance_that_keeps_answering_500_gets_no_more_calls(
    live_peer: tuple[str, list[str]], broken_peer: tuple[str, list[str]]
) -> None:
    live, live_seen = live_peer
    broken, broken_seen = broken_peer
    discovery = StaticDiscovery({"peer": f"{live},{broken}"})
    outcomes = []
    async with new_client_session() as session:
        client = Peer(session, discovery, timeout=2, internal_token="t")
        for _ in range(20):
            try:
                await client.request("GET", "/thing")
                outcomes.append("ok")
            except PeerUnavailable:
                outcomes.append("failed")
    assert len(broken_seen) == FAILURES_TO_EJECT
    assert outcomes.count("failed") == FAILURES_TO_EJECT
    assert len(live_seen) == 20 - FAILURES_TO_EJECT
