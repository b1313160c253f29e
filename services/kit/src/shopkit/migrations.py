"""Alembic per service, run at start.

Each service keeps its scripts in ``<package>/migrations`` (inside the package so they ship with
it) with an ``env.py`` that calls :func:`run_env`. :func:`migrate` upgrades to head on the
service's own engine; on PostgreSQL an advisory lock keeps replicas starting together from racing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from shopkit.db import Database
from shopkit.errors import is_database_unavailable
from shopkit.settings import ServiceSettings

log = logging.getLogger("shopkit.migrations")


def _config(script_location: Path, connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["connection"] = connection
    return cfg


async def migrate(db: Database, script_location: Path) -> None:
    async with db.engine.begin() as conn:
        if not db.is_sqlite:
            key = db.advisory_lock_key(str(script_location.parent.name))
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        await conn.run_sync(lambda sync: command.upgrade(_config(script_location, sync), "head"))


async def migrate_when_reachable(
    db: Database, script_location: Path, *, wait_seconds: float
) -> None:
    """:func:`migrate`, retrying while the database refuses connections, for up to
    ``wait_seconds``. On Kubernetes the database is installed with the services and may start
    after them (or after the migration Job); failing at once would cost a crash-loop back-off."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            await migrate(db, script_location)
            return
        except (OSError, DBAPIError) as exc:
            # Refused, unresolvable (DNS not ready) or timed out: the database may yet come.
            # Other OS errors (a SQLite path it may not write) will not mend by waiting.
            network = isinstance(exc, ConnectionError | socket.gaierror | TimeoutError)
            reachable_later = network or is_database_unavailable(exc)
            if not reachable_later or time.monotonic() >= deadline:
                raise
            log.warning("database not reachable yet, retrying: %s", exc.__class__.__name__)
            await asyncio.sleep(2.0)


async def migrate_command(
    settings: ServiceSettings, script_location: Path, *, wait_seconds: float
) -> None:
    """The migration Job's body (``python -m shop_<name>.main migrate``)."""
    db = Database(
        settings.effective_database_url,
        pool_size=1,
        lock_timeout=settings.database_lock_timeout_seconds,
    )
    try:
        await migrate_when_reachable(db, script_location, wait_seconds=wait_seconds)
    finally:
        await db.engine.dispose()
    log.info("migrated %s to head", settings.service_name)


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's ``env.py``: migrate on the connection :func:`migrate` gives."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run through shopkit.migrations.migrate(), not the CLI")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def schema_drift(db: Database, metadata: MetaData) -> list[Any]:
    """Differences between the migrated database and the models (empty when they agree)."""

    def _compare(sync: Connection) -> list[Any]:
        ctx = MigrationContext.configure(sync, opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata))

    async with db.engine.connect() as conn:
        return await conn.run_sync(_compare)
