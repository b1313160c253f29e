"""The FAKE Consul (tests/fakes/consul.py) behaves as its CONSUL.md says Consul does, seen through
raw HTTP and through the client library the services use (py-consul's asyncio client).

The checked service is a real aiohttp server on loopback whose ``/readyz`` a test flips between
200, 429 and 503 - or holds at the door, or takes away. Waits poll the fake's state with a
deadline; no sleep stands in for an assertion.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import consul
import consul.aio
import pytest
from aiohttp import web
from consul.exceptions import ACLPermissionDenied, BadRequest
from shopkit.launcher import free_port

from tests.fakes.consul import FakeConsul, FakeConsulProcess, format_duration, parse_duration

# py-consul 1.8's asyncio client builds its aiohttp connector with an ssl argument aiohttp 3.14
# deprecates, and the suite turns warnings into errors.
pytestmark = pytest.mark.filterwarnings("ignore:ssl_context is deprecated:DeprecationWarning")

INTERVAL = "200ms"


class CheckedService:
    """A real tiny service for the fake to check: ``/readyz`` answers ``status``; while ``gate``
    is clear, checks wait at the door. It notes how it was asked."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status = 200
        self.gate = asyncio.Event()
        self.gate.set()
        self.hits = 0
        self.requests: list[tuple[str, str | None]] = []  # method, X-Probe header
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/readyz"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _readyz(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.requests.append((request.method, request.headers.get("X-Probe")))
        await self.gate.wait()
        return web.Response(status=self.status, text=f"ready? {self.status}")


@pytest.fixture(autouse=True)
def no_consul_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """py-consul reads these (its token variable even over the token it is given)."""
    for suffix in ("ADDR", "TOKEN", "SSL", "SSL_VERIFY"):
        monkeypatch.delenv(f"CONSUL_HTTP_{suffix}", raising=False)


@pytest.fixture
async def fake() -> AsyncIterator[FakeConsul]:
    async with FakeConsul() as running:
        yield running


@pytest.fixture
async def services() -> AsyncIterator[Callable[[], Awaitable[CheckedService]]]:
    started: list[CheckedService] = []

    async def start() -> CheckedService:
        service = CheckedService()
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


@pytest.fixture
async def client(fake: FakeConsul) -> AsyncIterator[Any]:
    c = consul.aio.Consul(host="127.0.0.1", port=fake.port)
    yield c
    await c.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 5.0
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


async def register(
    client: Any,
    service: CheckedService,
    service_id: str = "cart-1",
    *,
    deregister: str | None = None,
) -> None:
    check = consul.Check.http(service.url, INTERVAL, timeout="1s", deregister=deregister)
    registered = await client.agent.service.register(
        "cart",
        service_id=service_id,
        address="127.0.0.1",
        port=service.port,
        tags=["v1"],
        meta={"version": "0.1.0"},
        check=check,
    )
    assert registered is True


async def passing_ids(client: Any, name: str = "cart") -> list[str]:
    _, entries = await client.health.service(name, passing=True)
    return sorted(entry["Service"]["ID"] for entry in entries)


async def check_of(client: Any, check_id: str) -> dict[str, Any]:
    checks: dict[str, dict[str, Any]] = await client.agent.checks()
    return checks[check_id]


async def health(
    http: aiohttp.ClientSession, fake: FakeConsul, name: str, **params: str
) -> tuple[int, list[dict[str, Any]]]:
    async with http.get(f"{fake.url}/v1/health/service/{name}", params=params) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        assert resp.headers["X-Consul-KnownLeader"] == "true"
        assert resp.headers["X-Consul-LastContact"] == "0"
        return int(resp.headers["X-Consul-Index"]), await resp.json()


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("500ms", 0.5),
        ("200ms", 0.2),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("2h45m", 9900.0),
        ("1500us", 0.0015),
        (".5s", 0.5),
        ("0", 0.0),
        ("-1s", -1.0),
    ],
)
def test_go_durations_are_parsed(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "1s ", " 1s", "1..5s", "--1s", "1m30", "+"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "200ms"), (10, "10s"), (90, "1m30s"), (60, "1m0s"), (3600, "1h0m0s"), (1.5, "1.5s")],
)
def test_durations_are_echoed_the_way_go_prints_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- registration and checks --------------------------------------------------------------


async def test_an_instance_is_critical_until_its_first_check_runs_then_passing(
    fake: FakeConsul, client: Any, services: Callable[[], Awaitable[CheckedService]]
) -> None:
    cart = await services()
    cart.gate.clear()  # the first check waits at the door until the test has looked
    await register(client, cart)

    check = await check_of(client, "service:cart-1")
    assert (check["Status"], check["Output"]) == ("critical", "")
    assert await passing_ids(client) == []
    _, entries = await client.health.service("cart")
    assert [c["Status"] for c in entries[0]["Checks"]] == ["passing", "critical"]

    cart.gate.set()
    await eventually(lambda: _passing(client, "cart-1"), "the instance passes its check")
    index, [entry] = await client.health.service("cart", passing=True)
    assert int(index) >= 1
    service = entry["Service"]
    assert (service["ID"], service["Service"], service["Address"], service["Port"]) == (
        "cart-1",
        "cart",
        "127.0.0.1",
        cart.port,
    )
    assert (service["Tags"], service["Meta"]) == (["v1"], {"version": "0.1.0"})
    assert entry["Node"]["Datacenter"] == "dc1"
    assert entry["Node"]["Address"] == "127.0.0.1"
    serf, readyz = entry["Checks"]
    assert (serf["CheckID"], serf["Status"]) == ("serfHealth", "passing")
    assert (readyz["CheckID"], readyz["ServiceName"], readyz["Status"]) == (
        "service:cart-1",
        "cart",
        "passing",
    )
    assert "200" in readyz["Output"]
    assert cart.requests[0] == ("GET", None)


async def test_passing_keeps_only_instances_whose_checks_all_pass(
    fake: FakeConsul, client: Any, services: Callable[[], Awaitable[CheckedService]]
) -> None:
    one, two = await services(), await services()
    await register(client, one, "cart-1")
    await register(client, two, "cart-2")
    await eventually(
        lambda: _equals(passing_ids(client), ["cart-1", "cart-2"]), "both instances pass"
    )

    two.status = 503
    await eventually(lambda: _equals(passing_ids(client), ["cart-1"]), "the 503 drops out")
    _, entries = await client.health.service("cart")  # without ?passing: every instance
    checks = {e["Service"]["ID"]: e["Checks"][1] for e in entries}
    assert checks["cart-1"]["Status"] == "passing"
    assert checks["cart-2"]["Status"] == "critical"
    assert "503" in checks["cart-2"]["Output"]

    two.status = 429
    await eventually(
        lambda: _status_is(client, "service:cart-2", "warning"), "a 429 makes a warning"
    )
    assert await passing_ids(client) == ["cart-1"]  # a warning does not pass

    two.status = 200
    await eventually(
        lambda: _equals(passing_ids(client), ["cart-1", "cart-2"]), "the instance is back"
    )


async def _equals(ids: Awaitable[list[str]], expected: list[str]) -> bool:
    return await ids == expected


async def _passing(client: Any, *ids: str) -> bool:
    return await passing_ids(client) == sorted(ids)


async def _status_is(client: Any, check_id: str, status: str) -> bool:
    return bool((await check_of(client, check_id))["Status"] == status)


async def test_re_registering_replaces_the_definition_and_keeps_check_status(
    fake: FakeConsul, http: aiohttp.ClientSession, services: Callable[[], Awaitable[CheckedService]]
) -> None:
    cart = await services()
    body = {
        "Name": "cart",
        "ID": "cart-1",
        "Port": cart.port,
        "Checks": [
            {"HTTP": cart.url, "Interval": INTERVAL},
            {"HTTP": cart.url, "Interval": INTERVAL, "Name": "second"},
        ],
    }
    register_url = f"{fake.url}/v1/agent/service/register"
    async with http.put(register_url, json=body) as resp:
        assert resp.status == 200
        assert await resp.read() == b""
    await eventually(
        lambda: _equals(_health_ids(http, fake, "cart", passing=""), ["cart-1"]), "cart-1 passes"
    )
    index, _ = await health(http, fake, "cart")

    async with http.put(register_url, json=body) as resp:
        assert resp.status == 200
    again, [entry] = await health(http, fake, "cart", passing="")
    assert again == index  # writing what is already there changes nothing
    assert [c["CheckID"] for c in entry["Checks"]] == [
        "serfHealth",
        "service:cart-1:1",
        "service:cart-1:2",
    ]
    assert entry["Checks"][2]["Name"] == "second"
    assert entry["Checks"][1]["Name"] == "Service 'cart' check"

    # One check now, without replace-existing-checks: the old ones stay, the new one starts
    # critical (its default ID is service:cart-1, a check of its own).
    changed = {**body, "Tags": ["v2"], "Checks": [{"HTTP": cart.url, "Interval": INTERVAL}]}
    async with http.put(register_url, json=changed) as resp:
        assert resp.status == 200
    async with http.get(f"{fake.url}/v1/agent/checks") as resp:
        assert sorted(await resp.json()) == [
            "service:cart-1",
            "service:cart-1:1",
            "service:cart-1:2",
        ]
    async with http.get(f"{fake.url}/v1/agent/service/cart-1") as resp:
        assert (await resp.json())["Tags"] == ["v2"]
    assert (await health(http, fake, "cart"))[0] > index

    async with http.put(
        register_url, params={"replace-existing-checks": "true"}, json=changed
    ) as resp:
        assert resp.status == 200
    async with http.get(f"{fake.url}/v1/agent/checks") as resp:
        assert sorted(await resp.json()) == ["service:cart-1"]


async def _health_ids(
    http: aiohttp.ClientSession, fake: FakeConsul, name: str, **params: str
) -> list[str]:
    _, entries = await health(http, fake, name, **params)
    return sorted(e["Service"]["ID"] for e in entries)


async def test_body_keys_are_read_in_any_case_and_in_snake_case(
    fake: FakeConsul, http: aiohttp.ClientSession, services: Callable[[], Awaitable[CheckedService]]
) -> None:
    cart = await services()
    body = {
        "NAME": "cart",
        "id": "cart-7",
        "tags": ["v1"],
        "PoRt": cart.port,
        "address": "127.0.0.1",
        "meta": {"Version": "0.1.0"},
        "checks": [
            {
                "http": cart.url,
                "interval": INTERVAL,
                "TIMEOUT": "1s",
                "method": "HEAD",
                "header": {"X-Probe": ["fake"]},
                "deregister_critical_service_after": "1m30s",
            }
        ],
    }
    async with http.put(f"{fake.url}/v1/agent/service/register", json=body) as resp:
        assert resp.status == 200, await resp.text()

    async with http.get(f"{fake.url}/v1/agent/service/cart-7") as resp:
        service = await resp.json()
        assert resp.headers["X-Consul-ContentHash"] == service["ContentHash"]
    assert (service["ID"], service["Service"], service["Port"], service["Tags"]) == (
        "cart-7",
        "cart",
        cart.port,
        ["v1"],
    )
    assert service["Meta"] == {"Version": "0.1.0"}  # user data keeps its keys' case
    async with http.get(f"{fake.url}/v1/agent/checks") as resp:
        check = (await resp.json())["service:cart-7"]
    assert check["Type"] == "http"
    assert check["Definition"] == {
        "HTTP": cart.url,
        "Header": {"X-Probe": ["fake"]},
        "Method": "HEAD",
        "Body": "",
        "TLSSkipVerify": False,
        "Interval": "200ms",
        "Timeout": "1s",
        "DeregisterCriticalServiceAfter": "1m30s",
    }
    await eventually(lambda: bool(cart.requests), "the check runs")
    assert cart.requests[0] == ("HEAD", "fake")


BAD_REGISTRATIONS = [
    pytest.param({"ID": "cart-1", "Port": 1}, "Missing service name", id="no-name"),
    pytest.param({"Name": ""}, "Missing service name", id="empty-name"),
    pytest.param(
        {"Name": "cart", "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "10"}},
        "invalid duration",
        id="duration-without-unit",
    ),
    pytest.param(
        {"Name": "cart", "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "soon"}},
        "invalid duration",
        id="duration-garbage",
    ),
    pytest.param(
        {
            "Name": "cart",
            "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "1s", "Timeout": "1m30"},
        },
        "invalid duration",
        id="timeout-garbage",
    ),
    pytest.param(
        {
            "Name": "cart",
            "Checks": [
                {
                    "HTTP": "http://127.0.0.1:1/",
                    "Interval": "1s",
                    "DeregisterCriticalServiceAfter": "a while",
                }
            ],
        },
        "invalid duration",
        id="deregister-garbage",
    ),
    pytest.param(
        {"Name": "cart", "Check": {"HTTP": "http://127.0.0.1:1/"}}, "Interval", id="no-interval"
    ),
    pytest.param(
        {"Name": "cart", "Check": {"TCP": "127.0.0.1:1", "Interval": "1s"}},
        "TCP checks are not supported by this fake",
        id="tcp",
    ),
    pytest.param(
        {"Name": "cart", "Check": {"TTL": "10s"}},
        "TTL checks are not supported by this fake",
        id="ttl",
    ),
    pytest.param(
        {"Name": "cart", "Check": {"Args": ["/bin/true"], "Interval": "1s"}},
        "script checks are not supported by this fake",
        id="script",
    ),
    pytest.param(
        {"Name": "cart", "Checks": [{"GRPC": "127.0.0.1:1", "Interval": "1s"}]},
        "gRPC checks are not supported by this fake",
        id="grpc",
    ),
    pytest.param(
        {
            "Name": "cart",
            "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "1s", "Status": "fine"},
        },
        "Status",
        id="bad-initial-status",
    ),
    pytest.param({"Name": "cart", "Tags": "v1"}, "Tags", id="tags-not-a-list"),
    pytest.param(
        {
            "Name": "cart",
            "Checks": [
                {"CheckID": "readyz", "HTTP": "http://127.0.0.1:1/", "Interval": "1s"},
                {"CheckID": "readyz", "HTTP": "http://127.0.0.1:2/", "Interval": "1s"},
            ],
        },
        "given twice",
        id="same-check-id-twice",
    ),
]


@pytest.mark.parametrize(("body", "reason"), BAD_REGISTRATIONS)
async def test_invalid_registrations_are_refused_with_400(
    fake: FakeConsul, http: aiohttp.ClientSession, body: dict[str, Any], reason: str
) -> None:
    async with http.put(f"{fake.url}/v1/agent/service/register", json=body) as resp:
        assert resp.status == 400
        assert reason in await resp.text()
    async with http.get(f"{fake.url}/v1/agent/services") as resp:
        assert await resp.json() == {}
    assert fake.index == 1


async def test_a_body_that_is_not_json_is_refused_with_400(
    fake: FakeConsul, http: aiohttp.ClientSession, client: Any
) -> None:
    async with http.put(f"{fake.url}/v1/agent/service/register", data=b"{name: cart") as resp:
        assert resp.status == 400
        assert "Request decode failed" in await resp.text()
    with pytest.raises(BadRequest, match="TCP checks are not supported"):
        await client.agent.service.register("cart", check=consul.Check.tcp("127.0.0.1", 1, "1s"))


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"index": "soon"}, "Invalid index"),
        ({"index": "-1"}, "Invalid index"),
        ({"index": "1", "wait": "10"}, "Invalid wait time"),
        ({"passing": "maybe"}, "Invalid value for ?passing"),
        ({"filter": "Service.Port == 80"}, "not supported by this fake"),
    ],
)
async def test_invalid_health_queries_are_refused_with_400(
    fake: FakeConsul, http: aiohttp.ClientSession, params: dict[str, str], reason: str
) -> None:
    async with http.get(f"{fake.url}/v1/health/service/cart", params=params) as resp:
        assert resp.status == 400
        assert reason in await resp.text()


# --- blocking queries ---------------------------------------------------------------------


async def test_a_blocking_query_returns_as_soon_as_the_result_changes(
    fake: FakeConsul, client: Any, services: Callable[[], Awaitable[CheckedService]]
) -> None:
    cart = await services()
    await register(client, cart)
    await eventually(lambda: _passing(client, "cart-1"), "the instance passes")
    index, _ = await client.health.service("cart", passing=True)

    started = time.monotonic()
    query = asyncio.create_task(client.health.service("cart", passing=True, index=index, wait="5s"))
    await eventually(lambda: fake.blocked_queries == 1 or query.done(), "the query is held")
    assert not query.done(), "the query was answered at once"
    cart.status = 503
    new_index, entries = await asyncio.wait_for(query, 10)

    assert time.monotonic() - started < 5  # before its wait elapsed
    assert int(new_index) > int(index)
    assert entries == []


async def test_with_nothing_changing_a_blocking_query_waits_out_wait_and_keeps_its_index(
    fake: FakeConsul, client: Any, services: Callable[[], Awaitable[CheckedService]]
) -> None:
    cart = await services()
    await register(client, cart)
    await eventually(lambda: _passing(client, "cart-1"), "the instance passes")
    index, _ = await client.health.service("cart", passing=True)
    hits = cart.hits

    started = time.monotonic()
    same, entries = await client.health.service("cart", passing=True, index=index, wait="1s")
    elapsed = time.monotonic() - started

    assert same == index
    assert [e["Service"]["ID"] for e in entries] == ["cart-1"]
    assert 0.95 <= elapsed < 5  # about wait, plus at most wait/16 of jitter
    assert cart.hits >= hits + 2  # its check kept running, passing, meanwhile


async def test_steady_passing_checks_do_not_move_the_index(
    fake: FakeConsul, http: aiohttp.ClientSession, services: Callable[[], Awaitable[CheckedService]]
) -> None:
    cart = await services()
    body = {"Name": "cart", "ID": "cart-1", "Check": {"HTTP": cart.url, "Interval": INTERVAL}}
    async with http.put(f"{fake.url}/v1/agent/service/register", json=body) as resp:
        assert resp.status == 200
    await eventually(
        lambda: _equals(_health_ids(http, fake, "cart", passing="1"), ["cart-1"]),
        "cart-1 passes",
    )
    index, _ = await health(http, fake, "cart")
    store_index = fake.index
    hits = cart.hits
    await eventually(lambda: cart.hits >= hits + 3, "three more passing checks")
    assert (await health(http, fake, "cart"))[0] == index
    assert fake.index == store_index


async def test_deregistering_removes_the_instance_and_wakes_a_blocked_query(
    fake: FakeConsul,
    client: Any,
    http: aiohttp.ClientSession,
    services: Callable[[], Awaitable[CheckedService]],
) -> None:
    cart = await services()
    await register(client, cart)
    # Settled first: the check's first result would otherwise move the index under the query.
    await eventually(lambda: _passing(client, "cart-1"), "the instance passes")
    index, [_] = await client.health.service("cart")

    started = time.monotonic()
    query = asyncio.create_task(client.health.service("cart", index=index, wait="5s"))
    await eventually(lambda: fake.blocked_queries == 1 or query.done(), "the query is held")
    assert not query.done(), "the query was answered at once"
    assert await client.agent.service.deregister("cart-1") is True
    new_index, entries = await asyncio.wait_for(query, 10)

    assert time.monotonic() - started < 5
    assert int(new_index) > int(index)
    assert entries == []
    assert await client.agent.services() == {}
    assert await client.agent.checks() == {}
    async with http.get(f"{fake.url}/v1/agent/service/cart-1") as resp:
        assert resp.status == 404


async def test_deregistering_an_unknown_id_is_404(
    fake: FakeConsul, client: Any, http: aiohttp.ClientSession
) -> None:
    async with http.put(f"{fake.url}/v1/agent/service/deregister/nobody") as resp:
        assert resp.status == 404
        assert 'Unknown service ID "nobody"' in await resp.text()
    assert await client.agent.service.deregister("nobody") is False


async def test_an_instance_critical_past_deregister_critical_service_after_is_reaped(
    fake: FakeConsul, client: Any, services: Callable[[], Awaitable[CheckedService]]
) -> None:
    cart = await services()
    await register(client, cart, deregister="1s")
    await eventually(lambda: _passing(client, "cart-1"), "the instance passes")
    index, _ = await client.health.service("cart")

    await cart.stop()  # its endpoint is gone: connections are refused
    await eventually(
        lambda: _status_is(client, "service:cart-1", "critical"), "the check turns critical"
    )
    assert "Connect" in (await check_of(client, "service:cart-1"))["Output"]
    await eventually(lambda: _no_services(client), "the instance is reaped")

    reaped_index, entries = await client.health.service("cart")
    assert entries == []
    assert int(reaped_index) > int(index)
    assert await client.agent.checks() == {}


async def _no_services(client: Any) -> bool:
    return bool(await client.agent.services() == {})


# --- the rest of the surface --------------------------------------------------------------


async def test_catalog_leader_and_a_service_never_seen(
    fake: FakeConsul, client: Any, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{fake.url}/v1/status/leader") as resp:
        assert await resp.json() == "127.0.0.1:8300"

    unseen_index, entries = await health(http, fake, "nobody")
    assert entries == []
    assert unseen_index == fake.index >= 1

    assert await client.agent.service.register("cart", service_id="cart-1", tags=["v1"]) is True
    canary = ["v1", "canary"]
    assert await client.agent.service.register("cart", service_id="cart-2", tags=canary) is True
    assert await client.agent.service.register("user", service_id="user-1") is True
    async with http.get(f"{fake.url}/v1/catalog/services") as resp:
        assert await resp.json() == {"cart": ["canary", "v1"], "user": []}
        assert int(resp.headers["X-Consul-Index"]) == fake.index
    # A name nobody registered answers with the store's index, which others' writes move.
    assert (await health(http, fake, "nobody"))[0] == fake.index > unseen_index
    # Every ?tag= must match, without regard to case.
    _, tagged = await client.health.service("cart", tag=["V1", "canary"])
    assert [e["Service"]["ID"] for e in tagged] == ["cart-2"]
    # A service without checks is passing: only the node's own check applies.
    assert await passing_ids(client, "user") == ["user-1"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/kv/cart", 404),
        ("GET", "/v1/agent/self", 404),
        ("GET", "/v1/agent/service/register", 405),
        ("GET", "/v1/agent/service/deregister/cart-1", 405),
        ("POST", "/v1/health/service/cart", 405),
        ("DELETE", "/v1/agent/services", 405),
    ],
)
async def test_anything_else_is_404_or_405_never_a_silent_200(
    fake: FakeConsul, http: aiohttp.ClientSession, method: str, path: str, status: int
) -> None:
    async with http.request(method, f"{fake.url}{path}") as resp:
        assert resp.status == status
        if status == 405:
            assert resp.headers["Allow"]


async def test_with_an_acl_token_a_request_without_it_is_refused_403(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeConsul(acl_token="s3cret") as fake:
        health_url = f"{fake.url}/v1/health/service/cart"
        async with http.get(health_url) as resp:
            assert resp.status == 403
            assert "Permission denied" in await resp.text()
        async with http.get(health_url, headers={"X-Consul-Token": "guess"}) as resp:
            assert resp.status == 403
            assert await resp.text() == "ACL not found"
        async with http.get(health_url, headers={"X-Consul-Token": "s3cret"}) as resp:
            assert resp.status == 200
        async with http.get(health_url, headers={"Authorization": "Bearer s3cret"}) as resp:
            assert resp.status == 200
        async with http.get(f"{fake.url}/v1/status/leader") as resp:
            assert resp.status == 200  # Consul's status endpoints need no ACL

        anonymous = consul.aio.Consul(host="127.0.0.1", port=fake.port)
        trusted = consul.aio.Consul(host="127.0.0.1", port=fake.port, token="s3cret")
        try:
            with pytest.raises(ACLPermissionDenied):
                await anonymous.agent.service.register("cart", service_id="cart-1")
            assert fake.index == 1
            assert await trusted.agent.service.register("cart", service_id="cart-1") is True
            _, entries = await trusted.health.service("cart")
            assert [e["Service"]["ID"] for e in entries] == ["cart-1"]
        finally:
            await anonymous.close()
            await trusted.close()


async def test_stopping_answers_held_queries_and_starting_again_begins_empty(
    http: aiohttp.ClientSession,
) -> None:
    fake = FakeConsul()
    await fake.start()
    try:
        body = {"Name": "cart", "ID": "cart-1"}
        async with http.put(f"{fake.url}/v1/agent/service/register", json=body) as resp:
            assert resp.status == 200
        index, _ = await health(http, fake, "cart")
        held = asyncio.create_task(health(http, fake, "cart", index=str(index), wait="30s"))
        await eventually(lambda: fake.blocked_queries == 1 or held.done(), "the query is held")
        assert not held.done(), "the query was answered at once"

        await fake.stop()
        assert (await asyncio.wait_for(held, 5))[0] == index
        await fake.start()
        assert await health(http, fake, "cart") == (1, [])
    finally:
        await fake.stop()


async def test_a_killed_fake_process_comes_back_empty_on_the_same_port_with_a_low_index() -> None:
    process = FakeConsulProcess()
    process.start()
    try:
        before_kill = consul.aio.Consul(host="127.0.0.1", port=process.port)
        try:
            for n in range(5):
                await before_kill.agent.service.register("cart", service_id=f"cart-{n}")
            index, entries = await before_kill.health.service("cart")
            assert len(entries) == 5
            url = process.url

            process.kill()
            assert not process.running
            with pytest.raises(aiohttp.ClientConnectionError):
                await before_kill.agent.services()
        finally:
            await before_kill.close()

        process.restart()
        assert process.url == url
        after_restart = consul.aio.Consul(host="127.0.0.1", port=process.port)
        try:
            new_index, entries = await after_restart.health.service("cart")
            assert entries == []
            assert 1 <= int(new_index) < int(index)  # clients must take a lower index as a reset
            assert await after_restart.agent.services() == {}
        finally:
            await after_restart.close()
    finally:
        process.stop()
    assert not process.running
