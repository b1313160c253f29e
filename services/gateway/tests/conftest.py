"""Fixtures: the real gateway under uvicorn on loopback, in front of real test upstreams.

The test upstreams are small aiohttp servers (one per service) that echo what they received, so
tests can assert what the gateway forwarded; a few paths misbehave on purpose (slow, huge,
trickling answers). Tokens are minted by shopkit.testing.TokenFactory; the "user" test upstream
publishes the factory's keys like the real user service does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from shop_gateway.app import Gateway, create_app
from shop_gateway.settings import UPSTREAMS, GatewaySettings
from shopkit.testing import TokenFactory, free_port, serve_app

BIG_BODY = random.Random(7).randbytes(5 * 1024 * 1024)
TRICKLE_PAUSE = 0.6


@dataclass
class TestUpstream:
    """A stand-in for one service, recording every request it gets."""

    name: str
    url: str = ""
    calls: list[str] = field(default_factory=list)
    openapi: dict[str, Any] | None = None
    # Set: every proxied request is answered with this status (a broken instance).
    fail_with: int | None = None


def _openapi_for(name: str) -> dict[str, Any]:
    """A small document like FastAPI's, with public, internal and health paths."""
    prefix = {
        "user": "/api/v1/users/me",
        "product": "/api/v1/products",
        "cart": "/api/v1/cart",
        "order": "/api/v1/orders",
        "notification": "/api/v1/notifications",
    }[name]
    page_ref = {"$ref": "#/components/schemas/Page"}
    return {
        "openapi": "3.1.0",
        "info": {"title": name, "version": "0.1.0"},
        "paths": {
            prefix: {
                "get": {
                    "operationId": "list_items",
                    "responses": {"200": {"content": {"application/json": {"schema": page_ref}}}},
                }
            },
            f"/internal/{name}/secret": {
                "get": {
                    "operationId": f"{name}_secret",
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Secret"}
                                }
                            }
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                # Same name, different shape in every service: must be told apart.
                "Page": {
                    "type": "object",
                    "properties": {
                        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                        "money": {"$ref": "#/components/schemas/Money"},
                    },
                },
                "Item": {"type": "object", "title": f"{name} item"},
                # Identical everywhere: must stay one schema.
                "Money": {"type": "object", "properties": {"amount": {"type": "integer"}}},
                "Secret": {"type": "object", "properties": {"token": {"type": "string"}}},
            }
        },
    }


def _upstream_app(upstream: TestUpstream, tokens: TokenFactory) -> web.Application:
    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response(tokens.jwks)

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(upstream.openapi)

    async def anything(request: web.Request) -> web.StreamResponse:
        upstream.calls.append(f"{request.method} {request.path}")
        if upstream.fail_with is not None:
            return web.json_response({"broken": True}, status=upstream.fail_with)
        tail = request.path.rsplit("/", 1)[-1]
        if tail == "slow":
            await asyncio.sleep(3)
        if tail == "big":
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            await response.prepare(request)
            for start in range(0, len(BIG_BODY), 256 * 1024):
                await response.write(BIG_BODY[start : start + 256 * 1024])
            await response.write_eof()
            return response
        if tail == "trickle":
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await response.prepare(request)
            await response.write(b"first;")
            await asyncio.sleep(TRICKLE_PAUSE)
            await response.write(b"second")
            await response.write_eof()
            return response
        body = await request.read()
        headers = {}
        if tail == "cached":
            headers["Cache-Control"] = "public, max-age=60"
        if tail == "set-cookie":
            headers["Set-Cookie"] = "session=upstream-secret; Path=/"
        return web.json_response(
            {
                "service": upstream.name,
                "method": request.method,
                "target": request.raw_path,
                "headers": [[k, v] for k, v in request.headers.items()],
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            },
            headers=headers,
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/livez", livez)
    app.router.add_get("/openapi.json", openapi)
    if upstream.name == "user":
        app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


@contextlib.asynccontextmanager
async def serve_upstream(
    upstream: TestUpstream, tokens: TokenFactory
) -> AsyncIterator[TestUpstream]:
    runner = web.AppRunner(
        _upstream_app(upstream, tokens), shutdown_timeout=0.5, handler_cancellation=True
    )
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    upstream.url = f"http://127.0.0.1:{port}"
    try:
        yield upstream
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_gateway(app: Gateway) -> AsyncIterator[str]:
    """The gateway under a real uvicorn on loopback, the way it runs in production."""
    async with serve_app(
        app,
        port=app.settings.port,
        lifespan="on",
        http="httptools",
        # As shopkit.server.serve runs it: the gateway is the edge and trusts no forwarding headers.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=1,
    ) as url:
        yield url


@pytest.fixture
async def upstreams(tokens: TokenFactory) -> AsyncIterator[dict[str, TestUpstream]]:
    found = {name: TestUpstream(name, openapi=_openapi_for(name)) for name in UPSTREAMS}
    async with contextlib.AsyncExitStack() as stack:
        for upstream in found.values():
            await stack.enter_async_context(serve_upstream(upstream, tokens))
        yield found


@pytest.fixture
def another_instance(
    tokens: TokenFactory,
) -> Callable[[str], contextlib.AbstractAsyncContextManager[TestUpstream]]:
    """A second instance of a service's stand-in, served for the block that asks for it."""
    return lambda name: serve_upstream(TestUpstream(name), tokens)


def gateway_settings(upstreams: dict[str, TestUpstream], **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "port": free_port(),
        "log_json": False,
        # Most tests send bursts from one address; the rate-limit tests turn it on.
        "rate_limit_per_second": 0,
        **{f"{name}_url": upstream.url for name, upstream in upstreams.items()},
    }
    values.update(overrides)
    return GatewaySettings(**values)


GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def gateway_factory(upstreams: dict[str, TestUpstream]) -> GatewayFactory:
    """Start a gateway with settings overrides; yields an httpx client pointed at it."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(gateway_settings(upstreams, **overrides))
        async with (
            serve_gateway(app) as url,
            httpx.AsyncClient(base_url=url, timeout=15) as client,
        ):
            yield client

    return start


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_factory() as client:
        yield client


def echoed_headers(response: httpx.Response) -> dict[str, list[str]]:
    """Headers the test upstream received, lower-cased, every value kept."""
    found: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        found.setdefault(name.lower(), []).append(value)
    return found


@pytest.fixture
def received() -> Callable[[httpx.Response], dict[str, list[str]]]:
    return echoed_headers


RawExchange = Callable[[httpx.AsyncClient, bytes], Any]


async def raw_exchange(client: httpx.AsyncClient, request: bytes) -> tuple[int, bytes]:
    """Send bytes exactly as given (no client-side URL normalisation or body framing) and
    return the status and the raw head of the answer."""
    url = client.base_url
    assert url.host and url.port
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    status = int(head.split(b" ", 2)[1])
    return status, head


@pytest.fixture
def raw() -> Callable[[httpx.AsyncClient, bytes], Any]:
    return raw_exchange
