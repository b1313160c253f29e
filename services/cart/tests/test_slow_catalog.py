"""A catalog that hangs must not stall other customers' carts.

The peer here is a STAND-IN, not the product service: an aiohttp server on loopback that
accepts the lookup and never answers in time. The real service cannot be made to hang on cue
in-process, and hanging is the behaviour under test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from shop_cart.app import create_app
from shop_cart.settings import CartSettings
from shopkit.http import INTERNAL_TOKEN_HEADER
from shopkit.testing import TokenFactory, free_port, running_app
from sqlalchemy import text

NOW = "2026-01-01 00:00:00.000000"


@pytest.fixture
async def hung_catalog_url() -> AsyncIterator[str]:
    async def lookup(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({"items": []})

    app = web.Application()
    app.router.add_post("/internal/products/lookup", lookup)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_hung_catalog_does_not_hold_the_database(
    tmp_path: Path, jwks_url: str, tokens: TokenFactory, hung_catalog_url: str
) -> None:
    settings = CartSettings(
        data_dir=tmp_path / "cart",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'cart.sqlite3'}",
        user_url=jwks_url,
        product_url=hung_catalog_url,
        internal_token="t",
        http_timeout_seconds=1.5,
        log_json=False,
        log_level="WARNING",
    )
    app = create_app(settings)
    async with running_app(app) as client:
        async with app.state.db.session() as session:
            await session.execute(text("INSERT INTO carts VALUES ('slow', 1, :t)"), {"t": NOW})
            await session.execute(
                text("INSERT INTO cart_lines VALUES ('slow', 'p1', 2, 'Bun', 300, :t)"),
                {"t": NOW},
            )
        slow = asyncio.create_task(client.get("/api/v1/cart", headers=tokens.headers("slow")))
        await asyncio.sleep(0.3)
        assert not slow.done()

        started = time.monotonic()
        other = await client.get("/internal/carts/other", headers={INTERNAL_TOKEN_HEADER: "t"})
        cleared = await client.post(
            "/internal/carts/slow/clear", json={"version": 7}, headers={INTERNAL_TOKEN_HEADER: "t"}
        )
        elapsed = time.monotonic() - started

        assert (other.status_code, cleared.status_code) == (200, 200)
        assert elapsed < 0.5
        answer = await slow
    # After the timeout the cart still renders, from its snapshot.
    assert answer.status_code == 200
    assert answer.json()["total"] == {"amount": 600, "currency": "USD"}
