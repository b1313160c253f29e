"""Helpers for the services' own tests: real servers on loopback, never mocks.

Imported by tests only (it needs the dev dependencies, httpx among them).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvicorn
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from shopkit.auth import JWKS_PATH, public_jwk
from shopkit.launcher import free_port, nats_server_binary

__all__ = [
    "TokenFactory",
    "eventually",
    "free_port",
    "nats_server",
    "running_app",
    "scraped",
    "serve_app",
    "serve_jwks",
]


class TokenFactory:
    """Mints tokens the way the user service does, with a key of its own, for services' tests."""

    def __init__(self, *, issuer: str = "sweetslice-user", audience: str = "sweetslice") -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = uuid.uuid4().hex[:16]
        self.issuer = issuer
        self.audience = audience

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(self.key, self.kid)]}

    def token(
        self,
        user_id: str | None = None,
        *,
        roles: tuple[str, ...] = ("customer",),
        email: str = "someone@example.com",
        ttl: int = 600,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "sub": user_id or str(uuid.uuid4()),
            "email": email,
            "roles": list(roles),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + ttl,
            **claims,
        }
        return jwt.encode(payload, self.key, algorithm="EdDSA", headers={"kid": self.kid})

    def headers(self, user_id: str | None = None, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, **kwargs)}"}


@contextlib.asynccontextmanager
async def serve_jwks(tokens: TokenFactory) -> AsyncIterator[str]:
    """A real HTTP server on loopback publishing the factory's keys; yields its base URL."""

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response(tokens.jwks)

    app = web.Application()
    app.router.add_get(JWKS_PATH, jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan entered, and a client that calls it in-process."""
    async with app.router.lifespan_context(app):
        # The kit answers 500 problems itself; Starlette still re-raises for the server to log.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


@contextlib.asynccontextmanager
async def serve_app(app: Any, *, port: int | None = None, **options: Any) -> AsyncIterator[str]:
    """An ASGI app behind a real uvicorn server on loopback, in this event loop; yields its URL.

    ``options`` go to ``uvicorn.Config`` (the gateway's tests pass the production ones)."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        **{"log_config": None, "access_log": False, "ws": "none", **options},
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            try:
                task.result()
            except SystemExit as exc:
                # uvicorn reports a failed startup with sys.exit(); keep it from ending the run.
                raise RuntimeError(f"uvicorn exited with {exc.code}") from None
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def nats_server(store_dir: Path) -> Iterator[str]:
    """A real NATS server with JetStream on loopback; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
        [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        else:
            raise TimeoutError("nats-server did not start")
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def eventually(check: Any, *, timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy; the last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


async def scraped(client: httpx.AsyncClient, name: str, **labels: str) -> float | None:
    """One sample of the service's own /metrics, as a scraper reads it; None when absent.

    ``name`` is the sample's name (``shop_x_total``, ``shop_y_bucket``...); ``labels`` must
    match the sample's labels exactly."""
    resp = await client.get("/metrics")
    assert resp.status_code == 200, resp.text
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None
