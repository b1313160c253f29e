"""shopkit.consul against the FAKE Consul of tests/fakes (no Consul server can be installed
here; tests/fakes/CONSUL.md says what the fake follows and where it differs): an instance
registers with its /readyz check and leaves at exit, watchers see instances come, fail and go
well before a blocking query's wait, and a registry that goes away and comes back empty costs
nothing but a re-registration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import aiohttp
import pytest
from aiohttp import web
from consul.exceptions import ACLPermissionDenied
from prometheus_client import REGISTRY
from shopkit import server
from shopkit.consul import (
    ConsulAgent,
    ConsulDiscovery,
    go_duration,
    instance_id,
    registration_for,
)
from shopkit.discovery import Discovery, UnknownService
from shopkit.launcher import free_port
from shopkit.registry import discovery_for
from shopkit.settings import ServiceSettings

from tests.e2e.support import eventually
from tests.fakes.consul import FakeConsul

# A blocking query's wait: far longer than any change may take to be seen.
WAIT_SECONDS = 20.0
CHECK_INTERVAL_SECONDS = 0.2


class Instance:
    """A real HTTP server standing for one instance: its /readyz can be switched to failing."""

    def __init__(self) -> None:
        self.port = free_port()
        self.ready = True
        self._runner: web.AppRunner | None = None

    async def _readyz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, status=200 if self.ready else 503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def settings_for(name: str, port: int, consul: FakeConsul, **more: object) -> ServiceSettings:
    values: dict[str, object] = {
        "service_name": name,
        "port": port,
        "discovery": "consul",
        "consul_http_addr": consul.url,
        "consul_wait_seconds": WAIT_SECONDS,
        "consul_check_interval_seconds": CHECK_INTERVAL_SECONDS,
        "consul_check_timeout_seconds": 1.0,
        "consul_deregister_after_seconds": 30.0,
        "http_timeout_seconds": 2.0,
        **more,
    }
    return ServiceSettings(**values)  # type: ignore[arg-type]


async def urls(discovery: Discovery, service: str, tries: int = 8) -> set[str]:
    try:
        return {await discovery.resolve(service) for _ in range(tries)}
    except UnknownService:
        return set()


@pytest.fixture
async def consul() -> AsyncIterator[FakeConsul]:
    async with FakeConsul() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def agent_services(session: aiohttp.ClientSession, consul: FakeConsul) -> dict[str, dict]:  # type: ignore[type-arg]
    async with session.get(f"{consul.url}/v1/agent/services") as resp:
        assert resp.status == 200
        found: dict[str, dict] = await resp.json()  # type: ignore[type-arg]
        return found


def test_durations_are_written_the_way_consul_reads_them() -> None:
    assert go_duration(10) == "10s"
    assert go_duration(0.2) == "200ms"
    assert go_duration(1.5) == "1500ms"


async def test_an_instance_registers_with_its_check_and_leaves_at_exit(
    consul: FakeConsul, session: aiohttp.ClientSession
) -> None:
    cart = Instance()
    await cart.start()
    settings = settings_for("cart", cart.port, consul, advertise_address="127.0.0.1")
    try:
        async with discovery_for(settings, {"product": "http://ignored:1"}):
            await eventually(
                lambda: _has(session, consul, instance_id(settings)), within=5, what="registered"
            )
            service = (await agent_services(session, consul))[instance_id(settings)]
            assert service["Service"] == "cart"
            assert service["Port"] == cart.port and service["Address"] == "127.0.0.1"
            assert "v0.1.0" in service["Tags"]
            assert service["Meta"]["version"] == "0.1.0"
            async with session.get(f"{consul.url}/v1/agent/checks") as resp:
                checks = await resp.json()
            (check,) = [c for c in checks.values() if c["ServiceID"] == instance_id(settings)]
            # The check is the instance's own /readyz, and the fake really ran it.
            await eventually(
                lambda: _passing_count(session, consul, "cart", 1), within=5, what="passing"
            )
            assert check["Type"] == "http"
        # Gone at exit: deregistered, not left to go critical.
        assert instance_id(settings) not in await agent_services(session, consul)
    finally:
        await cart.stop()


async def test_watchers_follow_instances_that_come_fail_and_go_without_waiting(
    consul: FakeConsul, session: aiohttp.ClientSession
) -> None:
    first, second = Instance(), Instance()
    await first.start()
    await second.start()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(first.stop)
        stack.push_async_callback(second.stop)
        caller = settings_for("order", free_port(), consul)
        watcher = await stack.enter_async_context(discovery_for(caller, {"product": ""}))
        # Nothing registered yet: no instance is known, which callers answer as 503.
        with pytest.raises(UnknownService):
            await watcher.resolve("product")

        await stack.enter_async_context(
            discovery_for(settings_for("product", first.port, consul), {})
        )
        seen = await eventually(
            lambda: _resolves(watcher, "product", {first.url}), within=5, what="first seen"
        )
        second_running = AsyncExitStack()
        stack.push_async_callback(second_running.aclose)
        await second_running.enter_async_context(
            discovery_for(settings_for("product", second.port, consul), {})
        )
        await eventually(
            lambda: _resolves(watcher, "product", {first.url, second.url}),
            within=5,
            what="second seen",
        )
        # Calls are spread over both.
        assert await urls(watcher, "product") == {first.url, second.url}

        # The second fails its check: it leaves the rotation at the next check, long before the
        # blocking query's wait would have ended.
        second.ready = False
        left = await eventually(
            lambda: _resolves(watcher, "product", {first.url}), within=5, what="failing left"
        )
        second.ready = True
        await eventually(
            lambda: _resolves(watcher, "product", {first.url, second.url}),
            within=5,
            what="recovered back",
        )
        # And it leaves for good when it deregisters.
        await second_running.aclose()
        gone = await eventually(
            lambda: _resolves(watcher, "product", {first.url}), within=5, what="deregistered"
        )
        assert max(seen, left, gone) < WAIT_SECONDS / 2


async def test_when_every_instance_fails_its_check_the_last_known_ones_are_kept(
    consul: FakeConsul, caplog: pytest.LogCaptureFixture
) -> None:
    only = Instance()
    await only.start()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(only.stop)
        await stack.enter_async_context(
            discovery_for(settings_for("payment", only.port, consul), {})
        )
        watcher = await stack.enter_async_context(
            discovery_for(settings_for("order", free_port(), consul), {"payment": ""})
        )
        await eventually(lambda: _resolves(watcher, "payment", {only.url}), within=5, what="seen")
        only.ready = False
        # Consul answers the watch: no passing instance...
        await eventually(
            lambda: "no passing instance of payment" in caplog.text,
            within=5,
            what="the watch saw the empty answer",
        )
        # ...but an instance failing its readiness may still answer: it stays in use.
        assert await urls(watcher, "payment") == {only.url}


async def test_a_registry_outage_keeps_the_last_instances_and_its_return_reregisters(
    session: aiohttp.ClientSession,
) -> None:
    port = free_port()
    consul = FakeConsul(port=port)
    await consul.start()
    user = Instance()
    await user.start()
    user_settings = settings_for("user", user.port, consul)
    caller = settings_for("gateway", free_port(), consul)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(user.stop)
        await stack.enter_async_context(discovery_for(user_settings, {}))
        watcher = await stack.enter_async_context(discovery_for(caller, {"user": ""}))
        await eventually(lambda: _resolves(watcher, "user", {user.url}), within=5, what="seen")
        # Changes to "user" take the watcher's index far ahead of where the restarted registry's
        # will be: a watcher that kept blocking on it would wait out its whole wait.
        for _ in range(25):
            churn = {"Name": "user", "ID": "user-churn", "Port": 1}
            async with session.put(f"{consul.url}/v1/agent/service/register", json=churn) as r:
                assert r.status == 200
            async with session.put(f"{consul.url}/v1/agent/service/deregister/user-churn") as r:
                assert r.status == 200
        await eventually(lambda: _resolves(watcher, "user", {user.url}), within=5, what="churned")
        failures_before = _failures("gateway", "user")

        await consul.stop()  # registry gone; its state with it
        await eventually(
            lambda: _failures("gateway", "user") > failures_before,
            within=5,
            what="the watch noticed",
        )
        # Unreachable registry: calls still go to the instance last known.
        assert await urls(watcher, "user") == {user.url}

        consul = FakeConsul(port=port)  # back, empty, its index small again
        await consul.start()
        stack.push_async_callback(consul.stop)
        # The instance's keeper registers it again, and the watcher, which starts over after
        # a failed query, finds it.
        await eventually(
            lambda: _has(session, consul, instance_id(user_settings)),
            within=10,
            what="registered again",
        )
        await eventually(
            lambda: _passing_count(session, consul, "user", 1), within=5, what="passing again"
        )
        # The watcher follows the new registry at once: a second instance is seen well before
        # a blocking query's wait.
        other = Instance()
        await other.start()
        stack.push_async_callback(other.stop)
        await stack.enter_async_context(discovery_for(settings_for("user", other.port, consul), {}))
        await eventually(
            lambda: _resolves(watcher, "user", {user.url, other.url}),
            within=WAIT_SECONDS / 4,
            what="new instance seen after the restart",
        )


async def test_the_acl_token_is_sent_and_a_wrong_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # py-consul would let this win over the token it is given; the setting must.
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-the-environment")
    cart = Instance()
    async with FakeConsul(acl_token="s3cret") as consul, aiohttp.ClientSession() as session:
        good = ConsulAgent(consul.url, session=session, token="s3cret", wait_seconds=1)
        bad = ConsulAgent(consul.url, session=session, token="nope", wait_seconds=1)
        registration = registration_for(settings_for("cart", cart.port, consul))
        await good.register(registration)
        assert await good.registered(registration.instance_id)
        index, found = await good.passing("cart")
        assert index >= 1 and found == []  # registered, not passing: nothing serves there
        for refused in (
            bad.passing("cart"),
            bad.register(registration),
            bad.deregister(registration.instance_id),
        ):
            with pytest.raises(ACLPermissionDenied, match="ACL not found"):
                await refused
        assert await good.deregister(registration.instance_id)
        assert not await good.registered(registration.instance_id)


async def test_the_deregister_command_removes_the_instance_then_waits(
    consul: FakeConsul, session: aiohttp.ClientSession
) -> None:
    cart = Instance()
    await cart.start()
    settings = settings_for("cart", cart.port, consul)
    try:
        async with discovery_for(settings, {}):
            await eventually(
                lambda: _has(session, consul, instance_id(settings)), within=5, what="registered"
            )
            # The preStop hook is another process in the same pod: it names the same instance.
            started = time.monotonic()
            await asyncio.to_thread(
                server.main,
                "unused:create_app",
                settings,
                argv=["deregister", "--drain-seconds", "0.5"],
            )
            assert time.monotonic() - started >= 0.5
            assert instance_id(settings) not in await agent_services(session, consul)
            # The server's keeper, which checks every second, does not put it back.
            await asyncio.sleep(2.5)
            assert instance_id(settings) not in await agent_services(session, consul)
        # Started again (a container restarted in its pod), the instance registers again.
        async with discovery_for(settings, {}):
            await eventually(
                lambda: _has(session, consul, instance_id(settings)), within=5, what="back"
            )
    finally:
        await cart.stop()


async def test_a_watcher_started_before_consul_answers_waits_briefly_then_gives_up() -> None:
    async with aiohttp.ClientSession() as session:
        nowhere = ConsulAgent(f"http://127.0.0.1:{free_port()}", session=session, timeout=0.5)
        discovery = ConsulDiscovery(nowhere, ["user"], first_answer_seconds=0.3)
        await discovery.start()
        try:
            started = time.monotonic()
            with pytest.raises(UnknownService):
                await discovery.resolve("user")
            assert time.monotonic() - started >= 0.3
            # Only once: from then on a call fails at once, until Consul answers.
            started = time.monotonic()
            with pytest.raises(UnknownService):
                await discovery.resolve("user")
            assert time.monotonic() - started < 0.2
        finally:
            await discovery.close()


class ScriptedAgent:
    """Consul's answers to a watch, in order, and the index each query was sent with."""

    def __init__(self, answers: list[tuple[int, list[str]]]) -> None:
        self.answers = answers
        self.asked: list[int] = []
        self.done = asyncio.Event()

    async def passing(self, service: str, *, index: int = 0) -> tuple[int, list[str]]:
        self.asked.append(index)
        if not self.answers:
            self.done.set()
            await asyncio.Event().wait()  # blocks like a query with nothing new
        return self.answers.pop(0)


async def test_an_index_that_goes_backwards_starts_the_watch_over() -> None:
    agent = ScriptedAgent([(7, ["http://a:1"]), (9, ["http://a:1"]), (3, ["http://b:2"])])
    discovery = ConsulDiscovery(agent, ["user"])  # type: ignore[arg-type]
    await discovery.start()
    try:
        await asyncio.wait_for(agent.done.wait(), 5)
    finally:
        await discovery.close()
    # First without an index, then blocking on the last one, and after the answer that went
    # backwards (3 < 9), without an index again rather than waiting for 9 to be passed.
    assert agent.asked == [0, 7, 9, 0]
    assert await discovery.resolve("user") == "http://b:2"


# helpers


async def _has(session: aiohttp.ClientSession, consul: FakeConsul, wanted: str) -> bool:
    return wanted in await agent_services(session, consul)


async def _passing_count(
    session: aiohttp.ClientSession, consul: FakeConsul, service: str, count: int
) -> bool:
    async with session.get(f"{consul.url}/v1/health/service/{service}?passing") as resp:
        return len(await resp.json()) == count


async def _resolves(discovery: Discovery, service: str, wanted: set[str]) -> bool:
    return await urls(discovery, service) == wanted


def _failures(service: str, peer: str) -> float:
    value = REGISTRY.get_sample_value(
        "shop_discovery_refresh_failures_total", {"service": service, "peer": peer}
    )
    return value or 0.0
