"""The order database locked by another writer at each point of a checkout (RELIABILITY.md R15):
the answer is 503 with Retry-After while nothing irrevocable happened, 202 once the money is
taken, never a 500 and never a half-written saga: the recovery loop finishes every order."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from shopkit.testing import eventually, free_port

if TYPE_CHECKING:
    from conftest import Customer, OrderApi, OrderFactory, Platform

LOCK_TIMEOUT = 0.3  # the order service's wait for the write lock in these tests
HELD = 1.5  # how long the other writer keeps it: well beyond the wait
# Long enough that recovery never takes over a checkout its request is still driving, even on
# a loaded machine; short enough to finish the abandoned ones within the test.
RECOVERY = {"saga_timeout_seconds": 3.0, "recovery_interval_seconds": 0.1}


class Holder:
    """A second writer on the order's SQLite file (the stdlib driver, in a thread of its own so
    that waiting for the lock never blocks the loop the order service runs on)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.released = asyncio.Event()
        self.times_held = 0

    async def hold(self, seconds: float) -> None:
        await asyncio.to_thread(self.conn.execute, "BEGIN EXCLUSIVE")
        self.times_held += 1
        asyncio.get_running_loop().call_later(seconds, self._release)

    def _release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.released.set()

    def close(self) -> None:
        self.conn.close()


@contextlib.asynccontextmanager
async def locking_proxy(
    upstream: str,
    when: Callable[[str, str, int], bool],
    holder: Holder,
    *,
    held: float = HELD,
    lose_answers: bool = False,
) -> AsyncIterator[str]:
    """Forwards to ``upstream``; once an answer matches ``when`` (first time only), takes the
    order database's lock before handing that answer back. With ``lose_answers``, every answer
    from then until the lock is released is replaced by a 503: the request did its work
    upstream, but the caller cannot know it."""

    async def handle(request: web.Request) -> web.StreamResponse:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                upstream + request.path_qs,
                data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            ) as resp,
        ):
            body = await resp.read()
        if holder.times_held == 0 and when(request.method, request.path, resp.status):
            await holder.hold(held)
        if lose_answers and holder.times_held and not holder.released.is_set():
            return web.Response(status=503, text="answer lost")
        return web.Response(body=body, status=resp.status, content_type=resp.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def order_db(platform: Platform) -> tuple[Path, dict[str, Any]]:
    path = platform.tmp_path / "order.sqlite3"
    return path, {"database_url": f"sqlite+aiosqlite:///{path}?timeout={LOCK_TIMEOUT}"}


async def cart(platform: Platform, customer: Customer) -> str:
    product = await platform.product(price=400, stock=10)
    await platform.put_in_cart(customer, product, 2)
    return product


def assert_database_unavailable(resp: Any) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["retry-after"]
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["type"].endswith("/database-unavailable")


async def final(orders: OrderApi, order_id: str, status: str) -> Any:
    async def reached() -> Any:
        row = await orders.row(order_id)
        return row if row.status == status else None

    row = await eventually(reached, timeout=15)
    assert row is not None, (await orders.row(order_id)).status
    return row


async def test_locked_before_anything_is_503_and_stores_nothing(
    platform: Platform, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    product = await cart(platform, customer)
    path, settings = order_db(platform)
    async with order_app(**settings, **RECOVERY) as orders:
        holder = Holder(path)
        try:
            await holder.hold(HELD)
            resp = await orders.place(customer, "locked-at-the-door")
            await holder.released.wait()
        finally:
            holder.close()
        assert_database_unavailable(resp)
        # Retried with the same key once the lock is gone: an ordinary checkout.
        again = await orders.place(customer, "locked-at-the-door")
        assert again.status_code == 201, again.text
        assert [o.idempotency_key for o in await orders.rows()] == ["locked-at-the-door"]
    assert await platform.available(product) == 8
    assert (await platform.ledger())["orders"][again.json()["id"]]["charges"] == 1


async def test_locked_after_the_reservation_is_503_and_released(
    platform: Platform, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    product = await cart(platform, customer)
    path, settings = order_db(platform)
    holder = Holder(path)
    try:

        def reserved(method: str, route: str, status: int) -> bool:
            return method == "POST" and route == "/internal/reservations" and status == 201

        async with (
            locking_proxy(platform.product_url, reserved, holder) as url,
            order_app(product_url=url, **settings, **RECOVERY) as orders,
        ):
            resp = await orders.place(customer, "locked-after-reserve")
            assert_database_unavailable(resp)
            await holder.released.wait()
            (row,) = await orders.rows()
            # Nothing was charged: the recovery loop gives the stock back and fails the order.
            failed = await final(orders, row.id, "failed")
            assert failed.saga_step == "released"
    finally:
        holder.close()
    assert holder.times_held == 1
    assert await platform.available(product) == 10
    assert (await platform.reservation(row.id) or {}).get("status") == "released"
    assert row.id not in (await platform.ledger())["orders"]


async def test_locked_after_the_charge_is_accepted_then_confirmed(
    platform: Platform, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    product = await cart(platform, customer)
    path, settings = order_db(platform)
    holder = Holder(path)
    try:

        def charged(method: str, route: str, status: int) -> bool:
            return method == "POST" and route == "/internal/charges" and status == 201

        async with (
            locking_proxy(platform.payment_url, charged, holder) as url,
            order_app(payment_url=url, **settings, **RECOVERY) as orders,
        ):
            resp = await orders.place(customer, "locked-after-charge")
            # The money is taken: never "503, nothing was charged".
            assert resp.status_code == 202, resp.text
            assert resp.json()["status"] == "pending"
            order_id = resp.json()["id"]
            await holder.released.wait()
            await final(orders, order_id, "confirmed")
            replay = await orders.place(customer, "locked-after-charge")
            assert replay.status_code == 201, replay.text
            assert replay.json()["id"] == order_id
    finally:
        holder.close()
    assert holder.times_held == 1
    assert await platform.available(product) == 8
    money = (await platform.ledger())["orders"][order_id]
    assert money["charges"] == 1 and money["refunds"] == 0, money
    assert (await platform.reservation(order_id) or {}).get("status") == "committed"


async def test_charge_unknown_while_locked_is_accepted_then_resolved(
    platform: Platform, order_app: OrderFactory
) -> None:
    """Two faults at once: the charge lands but no answer from payment reaches the order
    service, and its database refuses the write that would record the unknown outcome. The
    client must not be told that nothing was charged; recovery finds the charge and confirms."""
    customer = await platform.customer()
    product = await cart(platform, customer)
    path, settings = order_db(platform)
    holder = Holder(path)
    try:

        def charged(method: str, route: str, status: int) -> bool:
            return method == "POST" and route == "/internal/charges" and status == 201

        async with (
            # Held long enough to outlast the charge's retry and the lookup that follows it.
            locking_proxy(
                platform.payment_url, charged, holder, held=4.0, lose_answers=True
            ) as url,
            order_app(payment_url=url, **settings, **RECOVERY) as orders,
        ):
            resp = await orders.place(customer, "unknown-while-locked")
            assert not holder.released.is_set(), "the lock went before the saga's last write"
            assert resp.status_code == 202, resp.text
            assert resp.json()["status"] == "pending"
            order_id = resp.json()["id"]
            await holder.released.wait()
            await final(orders, order_id, "confirmed")
    finally:
        holder.close()
    assert holder.times_held == 1
    assert await platform.available(product) == 8
    money = (await platform.ledger())["orders"][order_id]
    assert money["charges"] == 1 and money["refunds"] == 0, money
