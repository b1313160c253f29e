"""The cross-service suite: the real processes (NATS, six services, the gateway), a real SMTP
server, and the database each service owns — SQLite files on the first pass, PostgreSQL on the
second. Every test talks to the gateway like a client would, and checks effects in the services'
own internal APIs rather than assuming them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from shopkit.launcher import PlatformConfig, free_port

from tests.e2e.support import (
    ADMIN,
    PostgresServer,
    RunningPlatform,
    SmtpSink,
    consul_discovery_env,
    merged_env,
)
from tests.fakes.consul import FakeConsulProcess


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


# sqlite and postgresql find peers by static addresses; consul (on SQLite) through the FAKE
# Consul of tests/fakes, each instance registering there and callers watching its health API.
@pytest.fixture(scope="session", params=["sqlite", "postgresql", "consul"])
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, smtp: SmtpSink
) -> Iterator[RunningPlatform]:
    pg = PostgresServer() if request.param == "postgresql" else None
    if pg is not None:
        pg.start()
    consul = None
    if request.param == "consul":
        consul = FakeConsulProcess(
            port=free_port(), log_path=tmp_path_factory.mktemp("consul") / "fake.log"
        )
        consul.start()
    config = PlatformConfig.ephemeral(
        tmp_path_factory.mktemp(f"platform-{request.param}"),
        database_url_template=pg.url_template if pg else None,
        admin=ADMIN,
        discovery="consul" if consul else "static",
        consul_http_addr=consul.url if consul else "http://127.0.0.1:8500",
        extra_env=merged_env(
            consul_discovery_env() if consul else {},
            {
                "notification": {
                    "SWEETSLICE_NOTIFICATION_MAIL_TRANSPORT": "smtp",
                    "SWEETSLICE_NOTIFICATION_SMTP_HOST": "127.0.0.1",
                    "SWEETSLICE_NOTIFICATION_SMTP_PORT": str(smtp.port),
                },
                # One client address drives the whole suite; the limiter has its own tests.
                "gateway": {
                    "SWEETSLICE_GATEWAY_RATE_LIMIT_PER_SECOND": "10000",
                    "SWEETSLICE_GATEWAY_RATE_LIMIT_BURST": "10000",
                },
                "order": {
                    # Tests stop payment and go on right after it is back: a short open period and
                    # one trial call let the breaker close within BREAKER_COOLDOWN_SECONDS.
                    "SWEETSLICE_ORDER_RESILIENCE__BREAKER_OPEN_SECONDS": "1",
                    "SWEETSLICE_ORDER_RESILIENCE__BREAKER_HALF_OPEN_CALLS": "1",
                    "SWEETSLICE_ORDER_RECOVERY_INTERVAL_SECONDS": "1",
                    "SWEETSLICE_ORDER_SAGA_TIMEOUT_SECONDS": "10",
                },
            },
        ),
    )
    running = RunningPlatform(config)
    try:
        try:
            running.start()
        except RuntimeError as exc:
            pytest.fail(f"{request.param}: {exc}")
        yield running
        running.stop()
    finally:
        if pg is not None:
            pg.stop()
        if consul is not None:
            consul.stop()


@pytest.fixture
async def client(platform: RunningPlatform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=30) as c:
        yield c
