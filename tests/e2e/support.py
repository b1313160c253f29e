"""Real components for the cross-service suite: PostgreSQL, an SMTP server, the platform itself."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import inspect
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from shopkit.launcher import SERVICES, Platform, PlatformConfig, free_port

T = TypeVar("T")
INTERNAL_TOKEN = "sweetslice-dev-internal-token"  # the development default every service shares
ADMIN = ("admin@sweetslice.test", "admin-password-123")
BREAKER_COOLDOWN_SECONDS = 1.5  # the order service's breaker open period in this suite, plus room


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], *, within: float, what: str
) -> float:
    """Seconds until ``predicate()`` (awaited if it is a coroutine) is true; fails the test
    naming ``what`` if that takes longer than ``within``."""
    started = time.monotonic()
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            pytest.fail(f"{what}: not within {within:g}s")
        await asyncio.sleep(0.05)


def consul_discovery_env(
    *, check_interval: float = 0.5, deregister_after: float = 4.0, wait: float = 5.0
) -> dict[str, dict[str, str]]:
    """PlatformConfig.extra_env for Consul discovery in tests: checks, reaping and blocking
    queries fast enough to be seen within seconds (the defaults are 10 s, 60 s and 30 s)."""
    return {
        service: {
            f"SWEETSLICE_{service.upper()}_CONSUL_CHECK_INTERVAL_SECONDS": str(check_interval),
            f"SWEETSLICE_{service.upper()}_CONSUL_CHECK_TIMEOUT_SECONDS": "1",
            f"SWEETSLICE_{service.upper()}_CONSUL_DEREGISTER_AFTER_SECONDS": str(deregister_after),
            f"SWEETSLICE_{service.upper()}_CONSUL_WAIT_SECONDS": str(wait),
        }
        for service in (*SERVICES, "gateway")
    }


def merged_env(*envs: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Several PlatformConfig.extra_env mappings as one; later ones win."""
    merged: dict[str, dict[str, str]] = {}
    for env in envs:
        for service, values in env.items():
            merged.setdefault(service, {}).update(values)
    return merged


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class PostgresServer:
    """A throw-away PostgreSQL cluster from the Debian package, one database per service."""

    def __init__(self) -> None:
        bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bindirs:
            raise RuntimeError(
                "PostgreSQL is not installed: apt-get install postgresql (.ci/run does it)"
            )
        self.bindir = Path(bindirs[-1])
        self.base = Path(tempfile.mkdtemp(prefix="sweetslice-pg-"))
        self.port = free_port()
        # initdb refuses to run as root; the package's postgres user owns the cluster then.
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            shutil.chown(self.base, "postgres", "postgres")

    def _run(self, *argv: str) -> None:
        subprocess.run([*self.as_owner, *argv], check=True, capture_output=True)

    def start(self) -> None:
        data = self.base / "data"
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(data), "-U", "sweetslice", "-A", "trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.base} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.base / "log"),
            "-o", options, "-w", "start",
        )  # fmt: skip
        for service in SERVICES:
            self._run(
                str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                "-U", "sweetslice", f"sweetslice_{service}",
            )  # fmt: skip

    @property
    def url_template(self) -> str:
        return f"postgresql://sweetslice@127.0.0.1:{self.port}/sweetslice_{{service}}"

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), "-m", "fast", "stop"
            )
        shutil.rmtree(self.base, ignore_errors=True)


class _Collect:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        with self.lock:
            self.messages.append(message_from_bytes(content))
        return "250 OK"


class SmtpSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self._handler = _Collect()
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def messages(self) -> list[Message]:
        with self._handler.lock:
            return list(self._handler.messages)

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages() if address in str(m.get("To", ""))]


@contextlib.contextmanager
def started_platform(
    config: PlatformConfig, more_logs: Callable[[], str] | None = None
) -> Iterator[RunningPlatform]:
    """A fixture's platform: started, then stopped. A start that fails fails the test with each
    service log's tail, and ``more_logs()`` (the logs of a server the platform depends on)."""
    running = RunningPlatform(config)
    try:
        running.start()
    except RuntimeError as exc:
        pytest.fail(f"{exc}{more_logs() if more_logs else ''}")
    yield running
    running.stop()


class RunningPlatform:
    """The platform's processes, driven from a loop in a thread of their own so that tests,
    each on their own event loop, can stop and start services in the middle of a test."""

    def __init__(self, config: PlatformConfig) -> None:
        self.config = config
        self.platform = Platform(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> float:
        """Start everything; if it does not come up, stop it and raise with each log's tail."""
        self._thread.start()
        try:
            return self.call(self.platform.start())
        except BaseException as exc:
            logs = "\n".join(
                f"--- {name} ---\n{_tail(child.log_path)}"
                for name, child in self.platform.children.items()
            )
            self.stop()
            raise RuntimeError(f"the platform did not start ({exc}):\n{logs}") from exc

    def stop(self) -> None:
        self.call(self.platform.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def stop_service(self, name: str) -> None:
        self.call(self.platform.children[name].stop())

    def kill_service(self, name: str) -> None:
        """SIGKILL, no chance to clean up: what a crash or an OOM kill looks like."""
        child = self.platform.children[name]

        async def kill() -> None:
            assert child.proc is not None and child.proc.returncode is None, name
            child.proc.kill()
            await child.proc.wait()
            child.state = "stopped"

        self.call(kill())

    def start_service(self, name: str) -> None:
        child = self.platform.children[name]
        self.call(child.start())
        self.call(self.platform.wait_ready(60, (name,)))

    @contextlib.contextmanager
    def down(self, name: str, *, kill: bool = False) -> Iterator[None]:
        if kill:
            self.kill_service(name)
        else:
            self.stop_service(name)
        try:
            yield
        finally:
            self.start_service(name)
            # Callers' breakers opened while it was down; give them their open period back.
            time.sleep(BREAKER_COOLDOWN_SECONDS)

    @property
    def gateway(self) -> str:
        return self.platform.gateway_url

    def url(self, service: str) -> str:
        return self.config.url(service)


@dataclass
class Customer:
    id: str
    email: str
    password: str
    headers: dict[str, str]


async def new_customer(client: httpx.AsyncClient, name: str = "Test Customer") -> Customer:
    email = f"c-{uuid.uuid4().hex[:12]}@example.com"
    password = "correct horse battery"
    resp = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "name": name}
    )
    assert resp.status_code == 201, resp.text
    user_id = resp.json()["id"]
    token = await login(client, email, password)
    return Customer(user_id, email, password, {"Authorization": f"Bearer {token}"})


async def login(client: httpx.AsyncClient, email: str, password: str) -> str:
    resp = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["access_token"]
    return token


def assert_problem(
    resp: httpx.Response, status: int, type_suffix: str | None = None
) -> dict[str, Any]:
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text}"
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["title"]
    if type_suffix is not None:
        assert body["type"].endswith(type_suffix), body
    return body


SHIPPING = {
    "name": "Ada Lovelace",
    "line1": "12 Baker Street",
    "city": "London",
    "postal_code": "NW1 6XE",
    "country": "GB",
}


def order_body(token: str = "tok_visa") -> dict[str, Any]:
    return {"payment_token": token, "shipping_address": dict(SHIPPING)}


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def fresh_product(
    client: httpx.AsyncClient, admin: dict[str, str], *, available: int = 10, price: int = 350
) -> dict[str, Any]:
    """A product of the test's own, so stock assertions do not depend on other tests."""
    sku = f"E2E-{uuid.uuid4().hex[:12]}"
    resp = await client.post(
        "/api/v1/products",
        json={
            "sku": sku,
            "name": f"Test Bun {sku}",
            "description": "Baked by the cross-service suite",
            "category": "test-bakes",
            "price": {"amount": price, "currency": "USD"},
            "available": available,
        },
        headers=admin,
    )
    assert resp.status_code == 201, resp.text
    product: dict[str, Any] = resp.json()
    return product


async def available(client: httpx.AsyncClient, product_id: str) -> int:
    resp = await client.get(f"/api/v1/products/{product_id}")
    assert resp.status_code == 200, resp.text
    count: int = resp.json()["available"]
    return count


async def fill_cart(client: httpx.AsyncClient, customer: Customer, lines: dict[str, int]) -> None:
    for product_id, quantity in lines.items():
        resp = await client.put(
            f"/api/v1/cart/items/{product_id}",
            json={"quantity": quantity},
            headers=customer.headers,
        )
        assert resp.status_code == 200, resp.text


async def charges_for(
    internal: httpx.AsyncClient, platform: RunningPlatform, order_id: str
) -> list[dict[str, Any]]:
    resp = await internal.get(
        platform.url("payment") + "/internal/charges", params={"order_id": order_id}
    )
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def metric(client: httpx.AsyncClient, url: str, name: str, labels: dict[str, str]) -> float:
    """A service's /metrics: the sum of every series of ``name`` carrying ``labels`` (just that
    series when the labels name one; 0 when none exists yet)."""
    resp = await client.get(url + "/metrics")
    assert resp.status_code == 200, resp.text
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in resp.text.splitlines()
        if line.startswith(name + "{") and all(w in line for w in wanted)
    )
