"""The product service application: catalog, search and inventory reservations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from shopkit.app import Runtime, Setup, create_service_app
from shopkit.db import Database, utcnow

from shop_product import service
from shop_product.routes import internal, public
from shop_product.settings import ProductSettings

log = logging.getLogger("shop_product.app")


async def expire_reservations_forever(db: Database, settings: ProductSettings) -> None:
    """Give back units held by orders that never committed or released them."""
    while True:
        try:
            await expire_reservations_once(db, settings)
        except Exception:
            # A locked or briefly unreachable database must not end the sweep for good.
            log.exception("reservation expiry sweep failed; retrying")
        await asyncio.sleep(settings.reservation_sweep_interval_seconds)


async def expire_reservations_once(db: Database, settings: ProductSettings) -> int:
    """One sweep, in small transactions until nothing is due; returns how many were due."""
    total = 0
    while True:
        async with db.session() as session:
            due = await service.expire_due(
                session=session, now=utcnow(), limit=settings.reservation_sweep_batch
            )
        total += due
        if due < settings.reservation_sweep_batch:
            return total


def _setup(settings: ProductSettings) -> Setup:
    @asynccontextmanager
    async def setup(_: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
        if settings.seed_catalog:
            async with runtime.db.session() as session:
                added = await service.seed_catalog(session=session)
            if added:
                log.info("seeded the catalog with %d products", added)
        runtime.spawn(expire_reservations_forever(runtime.db, settings), "reservation-expiry")
        yield

    return setup


def create_app(settings: ProductSettings | None = None) -> FastAPI:
    settings = settings or ProductSettings()
    return create_service_app(
        settings,
        title="Sweet Slice product",
        description="Catalog, search, categories and inventory reservations.",
        routers=[public, internal],
        migrations=Path(__file__).parent / "migrations",
        peers={},
        outbox=None,
        setup=_setup(settings),
    )
