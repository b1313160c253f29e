"""A write that waits on a lock another transaction holds longer than the service's lock
timeout (RELIABILITY.md R15) is answered 503 `database-unavailable` with Retry-After through the
gateway, on SQLite (a second writer holds the database) and on PostgreSQL (a row lock, bounded
by lock_timeout): never a 500 and never a request left waiting. Reads go on meanwhile, and the
same write succeeds once the lock is gone."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator

import asyncpg
import httpx

from tests.e2e.support import RunningPlatform, fresh_product

# The platform runs with the default lock timeout; the lock is held well beyond it.
LOCK_TIMEOUT_SECONDS = 5.0
HELD_SECONDS = LOCK_TIMEOUT_SECONDS + 4.0


@contextlib.asynccontextmanager
async def product_row_locked(platform: RunningPlatform, product_id: str) -> AsyncIterator[None]:
    """Another transaction holds a write lock that covers the product's row for the block."""
    template = platform.config.database_url_template
    if template is None:
        path = platform.config.data_dir.resolve() / "product" / "db.sqlite3"
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(template.format(service="product"))
    try:
        async with pg.transaction():
            locked = await pg.fetchval(
                "SELECT id FROM products WHERE id = $1 FOR UPDATE", product_id
            )
            assert locked == product_id
            yield
    finally:
        await pg.close()


async def test_a_write_blocked_past_the_lock_timeout_answers_503(
    platform: RunningPlatform, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    product = await fresh_product(client, admin_headers, available=5)
    url = f"/api/v1/products/{product['id']}"
    async with product_row_locked(platform, product["id"]):
        blocked = asyncio.create_task(
            client.patch(url, json={"name": "Locked Bun"}, headers=admin_headers)
        )
        # Reads take no write lock: they answer while the write waits.
        read = await client.get(url)
        assert read.status_code == 200, read.text
        resp = await asyncio.wait_for(blocked, HELD_SECONDS)
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["type"].endswith("/database-unavailable")
    assert int(resp.headers["retry-after"]) >= 1
    # Nothing of the refused write was kept, and the same write goes through now.
    assert (await client.get(url)).json()["name"] == product["name"]
    again = await client.patch(url, json={"name": "Locked Bun"}, headers=admin_headers)
    assert again.status_code == 200, again.text
    assert again.json()["name"] == "Locked Bun"
