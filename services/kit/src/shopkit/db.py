"""Async SQLAlchemy plumbing: one engine per service, SQLite (WAL) by default, or PostgreSQL.

Services never commit inside helpers: a request (or a message handler) opens one session through
:func:`session_dependency`, and the session commits once when the route returns, before the
response is sent, so state and outbox rows land together or not at all.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, Select, TypeDecorator, and_, event, or_, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from shopkit import clock
from shopkit.errors import DatabaseUnavailable, is_database_unavailable

# How long a write waits for a lock held by another transaction before the request is answered
# 503 (SQLite's busy timeout; PostgreSQL's lock_timeout). A SQLite URL's own ``?timeout=``
# (seconds, SQLAlchemy's pysqlite parameter) takes precedence.
DEFAULT_LOCK_TIMEOUT_SECONDS = 5.0


def normalize_url(url: str) -> str:
    """Accept the plain ``postgresql://`` and ``sqlite://`` forms; pick the async drivers."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres", "postgresql+psycopg2"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


class Database:
    """Owns the engine and the session factory of one service."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        sqlite_synchronous: str = "NORMAL",
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    ) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite}
        parsed = make_url(self.url)
        if self.is_sqlite:
            database = parsed.database
            if database and database != ":memory:" and not parsed.query.get("uri"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            timeout = parsed.query.get("timeout")
            self.lock_timeout = float(timeout) if isinstance(timeout, str) else lock_timeout
            kwargs["connect_args"] = {"timeout": self.lock_timeout}
        else:
            self.lock_timeout = lock_timeout
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
            if parsed.drivername.endswith("+asyncpg"):
                # Without it a write waits on a row lock for as long as the holder keeps it.
                lock_ms = str(round(lock_timeout * 1000))
                kwargs["connect_args"] = {"server_settings": {"lock_timeout": lock_ms}}
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        # Reads get their own engine on SQLite: a deferred BEGIN takes no lock, so GET requests
        # never queue behind writers (WAL gives them a consistent snapshot).
        self.read_engine: AsyncEngine = self.engine
        if self.is_sqlite:
            busy_ms = round(self.lock_timeout * 1000)
            _configure_sqlite(self.engine, sqlite_synchronous, busy_ms, begin="BEGIN IMMEDIATE")
            self.read_engine = create_async_engine(self.url, **kwargs)
            _configure_sqlite(self.read_engine, sqlite_synchronous, busy_ms, begin="BEGIN")
        # A session class of our own, so session events (the outbox relay's wake-up) can be
        # listened to for this database only.
        self.sync_session_class: type[Session] = type("ServiceSession", (Session,), {})
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=self.sync_session_class
        )
        self.read_sessionmaker = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits on success, rolls back on error. ``read_only`` sessions take
        no lock on SQLite; they may still write, at the risk of a busy error under contention."""
        factory = self.read_sessionmaker if read_only else self.sessionmaker
        async with factory() as session:
            try:
                yield session
                await session.commit()
            except DBAPIError as exc:
                # The whole unit of work is undone, whichever statement (or the commit) failed:
                # a request is stored entirely or not at all, never half.
                try:
                    await session.rollback()
                except DBAPIError:
                    # A connection that cannot even roll back is closed, not pooled or leaked.
                    await session.invalidate()
                if is_database_unavailable(exc):
                    raise database_unavailable() from exc
                raise
            except BaseException:
                await session.rollback()
                raise

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def advisory_lock_key(self, name: str) -> int:
        return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


def database_unavailable() -> DatabaseUnavailable:
    """A locked, read-only or unreachable database is a temporary condition, not a client error."""
    return DatabaseUnavailable(retry_after=1)


def _configure_sqlite(engine: AsyncEngine, synchronous: str, busy_ms: int, *, begin: str) -> None:
    # pysqlite's own transaction handling defers BEGIN and never takes the write lock up front:
    # two concurrent writers then fail with "database is locked" instead of waiting. Taking the
    # lock with BEGIN IMMEDIATE makes writers queue on busy_timeout, which is what we want.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        try:
            _prepare(dbapi_conn)
        except BaseException:
            # The pool drops a connection whose set-up failed (a locked file) without closing
            # it: close it here, or its driver thread outlives it.
            dbapi_conn.close()
            raise

    def _prepare(dbapi_conn: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        # Switching a fresh file to WAL fails at once ("database is locked"), without waiting on
        # busy_timeout, when another process or connection does it at the same moment.
        for attempt in range(50):
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                break
            except Exception as exc:  # the driver adapter may wrap sqlite3's error type
                if attempt == 49 or "locked" not in str(exc):
                    raise
                time.sleep(0.05)
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored and returned as aware UTC on SQLite too (which keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


S = TypeVar("S", bound=Select[Any])


def newest_first(
    stmt: S,
    created: InstrumentedAttribute[datetime],
    ident: InstrumentedAttribute[str],
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> S:
    """A keyset page, newest first on (created, id): pages stay stable while rows are added.
    ``after`` is the (created, id) of the last row of the previous page."""
    if after is not None:
        created_at, last_id = after
        stmt = stmt.where(or_(created < created_at, and_(created == created_at, ident < last_id)))
    return stmt.order_by(created.desc(), ident.desc()).limit(limit)


async def add_unique(session: AsyncSession, *rows: object) -> bool:
    """Insert in a savepoint: False when a unique constraint says the row exists already. Only
    this insert is undone, so the loser of a race can go on and read the winner's row."""
    try:
        async with session.begin_nested():
            session.add_all(rows)
    except IntegrityError:
        return False
    return True


def utcnow() -> datetime:
    """Now, on this service's clock (see :mod:`shopkit.clock` for the fault switch)."""
    return clock.utcnow()
