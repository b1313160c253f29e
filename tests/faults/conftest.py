"""The fault suite: the platform as processes (SQLite), with the order service's calls to payment
and product routed through a real Toxiproxy server, one platform for the whole session. Tests
drive checkouts through the gateway, deal faults, drain, and run the checker of RELIABILITY.md."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import httpx
import pytest
from shopkit.launcher import DEFAULT_PORTS, PlatformConfig, free_ports

from tests.e2e.support import ADMIN, RunningPlatform, started_platform
from tests.faults.harness import (
    CLIENT_TIMEOUT_SECONDS,
    PROXIED,
    Figures,
    suite_env,
)
from tests.faults.toxiproxy import Toxiproxy, ToxiproxyServer, build_toxiproxy

FIGURES = pytest.StashKey[Figures]()


def pytest_configure(config: pytest.Config) -> None:
    # `make chaos` names the file (SWEETSLICE_FAULT_FIGURES); otherwise it goes in the run's
    # temporary directory once the first test asks for the figures.
    path = os.environ.get("SWEETSLICE_FAULT_FIGURES")
    config.stash[FIGURES] = Figures(Path(path) if path else None)


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Figures:
    report = request.config.stash[FIGURES]
    if report.path is None:
        report.path = tmp_path_factory.getbasetemp() / "fault-figures.json"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # A figure is a result only if its test passed: each test's verdict goes beside them.
    if report.when == "call" or report.failed:
        verdict = report.outcome if report.when == "call" else f"error in {report.when}"
        item.config.stash[FIGURES].verdict(item.name, verdict)
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report = terminalreporter.config.stash.get(FIGURES, None)
    if report is None or not report.faults or report.path is None:
        return
    terminalreporter.section("fault figures")
    for line in report.lines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(written to {report.path})")


@pytest.fixture(scope="session")
def toxiproxy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToxiproxyServer]:
    binary = build_toxiproxy()
    (port,) = free_ports(1)
    server = ToxiproxyServer(binary, port, tmp_path_factory.mktemp("toxiproxy") / "server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def platform(
    tmp_path_factory: pytest.TempPathFactory, toxiproxy_server: ToxiproxyServer
) -> Iterator[RunningPlatform]:
    # One draw for every port, so no two listeners of the suite can be handed the same one.
    ports = free_ports(len(DEFAULT_PORTS) + 1 + len(PROXIED))
    service_ports = dict(zip(DEFAULT_PORTS, ports, strict=False))
    nats_port, *listen_ports = ports[len(DEFAULT_PORTS) :]
    listen = dict(zip(PROXIED, listen_ports, strict=True))
    config = PlatformConfig(
        data_dir=tmp_path_factory.mktemp("platform-faults"),
        ports=service_ports,
        nats_port=nats_port,
        admin=ADMIN,
        extra_env=suite_env(),
        peer_urls={edge: f"http://127.0.0.1:{port}" for edge, port in listen.items()},
    )

    async def create_proxies() -> None:
        async with Toxiproxy(toxiproxy_server.url) as api:
            for (caller, callee), name in PROXIED.items():
                address = f"127.0.0.1:{listen[(caller, callee)]}"
                await api.create_proxy(name, address, f"127.0.0.1:{config.ports[callee]}")

    asyncio.run(create_proxies())
    with started_platform(config) as running:
        yield running


@pytest.fixture
async def toxiproxy(toxiproxy_server: ToxiproxyServer) -> AsyncIterator[Toxiproxy]:
    async with Toxiproxy(toxiproxy_server.url) as api:
        yield api
        # A test that failed half-way must not leave its toxics to the next one.
        await api.reset()


@pytest.fixture
async def client(platform: RunningPlatform) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=platform.gateway, timeout=CLIENT_TIMEOUT_SECONDS, limits=limits
    ) as c:
        yield c
