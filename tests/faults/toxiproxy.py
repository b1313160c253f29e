"""A real Toxiproxy server (built from its Go module by scripts/build-toxiproxy.sh) and a small
typed client of its HTTP API: proxies between services, and toxics added to them and removed."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from tests.processes import stop_process, wait_until_answering

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-toxiproxy.sh"
BUILD_TIMEOUT_SECONDS = 900  # a cold `go install` on 2 cores, with room
Stream = Literal["upstream", "downstream"]


def build_toxiproxy() -> Path:
    """The cached server binary; built on first use (about 25 s cold, instant warm)."""
    done = subprocess.run(
        [str(BUILD_SCRIPT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    binary = Path(done.stdout.strip().splitlines()[-1])
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"{BUILD_SCRIPT} printed {binary}, which is not an executable")
    return binary


class ToxiproxyServer:
    """One ``toxiproxy-server`` process on loopback, its API on ``port``."""

    def __init__(self, binary: Path, port: int, log_path: Path) -> None:
        self.binary = binary
        self.port = port
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "LOG_LEVEL": "info"}  # its default (trace) logs every byte moved
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(self.binary), "-host", "127.0.0.1", "-port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
            )
        wait_until_answering(
            self._proc,
            self.url + "/version",
            what="toxiproxy-server",
            timeout=timeout,
            log_path=self.log_path,
        )

    def stop(self) -> None:
        stop_process(self._proc)


@dataclass(frozen=True)
class Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool

    @property
    def url(self) -> str:
        return f"http://{self.listen}"


@dataclass(frozen=True)
class Toxic:
    name: str
    type: str
    attributes: dict[str, int] = field(default_factory=dict)
    stream: Stream = "downstream"
    toxicity: float = 1.0

    def body(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": self.attributes,
        }


def latency(ms: int, *, jitter_ms: int = 0, stream: Stream = "downstream") -> Toxic:
    """Every chunk waits ``ms`` before it is passed on."""
    return Toxic(f"latency-{stream}", "latency", {"latency": ms, "jitter": jitter_ms}, stream)


def timeout(ms: int, *, stream: Stream = "downstream") -> Toxic:
    """Data is swallowed; the connection is closed after ``ms`` (0: never, a blackhole)."""
    return Toxic(f"timeout-{stream}", "timeout", {"timeout": ms}, stream)


def reset_peer(ms: int = 0, *, stream: Stream = "downstream") -> Toxic:
    """The connection is reset (RST) after ``ms``."""
    return Toxic(f"reset-peer-{stream}", "reset_peer", {"timeout": ms}, stream)


def bandwidth(kilobytes_per_second: int, *, stream: Stream = "downstream") -> Toxic:
    return Toxic(f"bandwidth-{stream}", "bandwidth", {"rate": kilobytes_per_second}, stream)


def slow_close(delay_ms: int, *, stream: Stream = "downstream") -> Toxic:
    """A closed connection stays open to the other side for ``delay_ms`` more."""
    return Toxic(f"slow-close-{stream}", "slow_close", {"delay": delay_ms}, stream)


class ToxiproxyError(RuntimeError):
    pass


class Toxiproxy:
    """Async client of the API (``async with Toxiproxy(url) as api``)."""

    def __init__(self, url: str) -> None:
        self._http = httpx.AsyncClient(base_url=url, timeout=10)

    async def __aenter__(self) -> Toxiproxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        resp = await self._http.request(method, path, json=body)
        if resp.status_code >= 300:
            raise ToxiproxyError(f"{method} {path}: {resp.status_code} {resp.text}")
        return resp.json() if resp.content else None

    async def version(self) -> str:
        resp = await self._http.get("/version")
        resp.raise_for_status()
        return resp.text

    async def create_proxy(self, name: str, listen: str, upstream: str) -> Proxy:
        data = await self._call(
            "POST",
            "/proxies",
            {"name": name, "listen": listen, "upstream": upstream, "enabled": True},
        )
        return _proxy(data)

    async def proxies(self) -> dict[str, Proxy]:
        data = await self._call("GET", "/proxies")
        return {name: _proxy(item) for name, item in data.items()}

    async def set_enabled(self, proxy: str, enabled: bool) -> Proxy:
        """A disabled proxy refuses new connections and closes the open ones."""
        return _proxy(await self._call("POST", f"/proxies/{proxy}", {"enabled": enabled}))

    async def add_toxic(self, proxy: str, toxic: Toxic) -> Toxic:
        data = await self._call("POST", f"/proxies/{proxy}/toxics", toxic.body())
        return _toxic(data)

    async def toxics(self, proxy: str) -> list[Toxic]:
        return [_toxic(item) for item in await self._call("GET", f"/proxies/{proxy}/toxics")]

    async def remove_toxic(self, proxy: str, name: str) -> None:
        await self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    async def reset(self) -> None:
        """Every proxy enabled again, every toxic removed."""
        await self._call("POST", "/reset")

    @contextlib.asynccontextmanager
    async def toxic(self, proxy: str, toxic: Toxic) -> AsyncIterator[Toxic]:
        added = await self.add_toxic(proxy, toxic)
        try:
            yield added
        finally:
            await self.remove_toxic(proxy, added.name)


def _proxy(data: dict[str, Any]) -> Proxy:
    return Proxy(data["name"], data["listen"], data["upstream"], bool(data["enabled"]))


def _toxic(data: dict[str, Any]) -> Toxic:
    return Toxic(
        data["name"],
        data["type"],
        {k: int(v) for k, v in data.get("attributes", {}).items()},
        data["stream"],
        float(data["toxicity"]),
    )
