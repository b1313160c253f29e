"""A database that refuses writes for a while (locked by another process, or read-only) makes a
request answer 503 problem+json with Retry-After, never 500, and stores nothing of it. Real
SQLite files, held by a second connection with the stdlib driver, the way another process would."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from pydantic_settings import SettingsConfigDict
from shopkit.app import create_service_app
from shopkit.db import Database
from shopkit.deps import SessionDep
from shopkit.errors import is_database_unavailable
from shopkit.settings import ServiceSettings
from shopkit.testing import running_app
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SWEETSLICE_DEMO_", frozen=True, extra="ignore")
    service_name: str = "demo"


router = APIRouter()


@router.post("/notes", status_code=201)
async def add_note(session: SessionDep, body: dict[str, str]) -> dict[str, str]:
    # Two rows for one request: both or neither must be stored.
    for part in ("head", "tail"):
        await session.execute(
            text("INSERT INTO notes (name, part) VALUES (:n, :p)"), {"n": body["name"], "p": part}
        )
    return body


@router.get("/notes")
async def list_notes(session: SessionDep) -> dict[str, int]:
    count = (await session.execute(text("SELECT count(*) FROM notes"))).scalar_one()
    return {"count": int(count)}


@router.post("/bare")
async def bare_write(request: Request) -> dict[str, bool]:
    # Outside any session: the problem handler still has to answer 503, not 500.
    db: Database = request.app.state.db
    async with db.engine.begin() as conn:
        await conn.execute(text("INSERT INTO notes (name, part) VALUES ('bare', 'x')"))
    return {"ok": True}


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS notes (name TEXT NOT NULL, part TEXT NOT NULL)")
    conn.close()


def _rows(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT name, part FROM notes").fetchall())
    finally:
        conn.close()


@contextmanager
def held_exclusive(path: Path) -> Iterator[sqlite3.Connection]:
    """Another writer holding the database's write lock, as a second process would."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield conn
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@asynccontextmanager
async def demo_app(url: str, tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_service_app(
        DemoSettings(data_dir=tmp_path, database_url=url, user_url="http://127.0.0.1:9"),
        title="demo",
        description="demo",
        routers=[router],
        migrations=None,
    )
    async with running_app(app) as client:
        yield app, client


def assert_unavailable(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert int(resp.headers["retry-after"]) >= 1
    body = resp.json()
    assert body["type"] == "https://sweetslice.dev/problems/database-unavailable", body
    assert body["status"] == 503


async def test_a_locked_database_answers_503_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite3"
    _create(path)
    # A short lock wait keeps the test quick; the default is DEFAULT_LOCK_TIMEOUT_SECONDS.
    async with demo_app(f"sqlite:///{path}?timeout=0.3", tmp_path) as (app, client):
        assert app.state.db.lock_timeout == pytest.approx(0.3)
        before = await client.post("/notes", json={"name": "before"})
        assert before.status_code == 201, before.text

        with held_exclusive(path):
            started = time.monotonic()
            locked = await client.post("/notes", json={"name": "locked"})
            waited = time.monotonic() - started
            bare = await client.post("/bare")
            # WAL: readers are not blocked by a writer, even one that said EXCLUSIVE.
            read = await client.get("/notes")
        assert_unavailable(locked)
        assert_unavailable(bare)
        assert waited >= 0.3, "the write did not wait for the lock at all"
        assert read.status_code == 200 and read.json() == {"count": 2}

        # The pool's connections were rolled back cleanly: the next request just works.
        after = await client.post("/notes", json={"name": "after"})
        assert after.status_code == 201, after.text
    assert _rows(path) == [
        ("after", "head"),
        ("after", "tail"),
        ("before", "head"),
        ("before", "tail"),
    ]


async def test_a_lock_shorter_than_the_timeout_is_waited_out(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite3"
    _create(path)
    async with demo_app(f"sqlite:///{path}?timeout=5", tmp_path) as (_, client):
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, holder.execute, "ROLLBACK")
        try:
            resp = await client.post("/notes", json={"name": "patient"})
        finally:
            holder.close()
        assert resp.status_code == 201, resp.text
    assert _rows(path) == [("patient", "head"), ("patient", "tail")]


async def test_a_read_only_database_answers_503_for_writes_only(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite3"
    _create(path)
    # A connection kept open keeps the WAL index that a read-only opener needs to exist.
    keeper = sqlite3.connect(path)
    keeper.execute("SELECT count(*) FROM notes").fetchall()
    try:
        url = f"sqlite:///file:{path}?mode=ro&uri=true&timeout=0.3"
        async with demo_app(url, tmp_path) as (_, client):
            write = await client.post("/notes", json={"name": "nope"})
            bare = await client.post("/bare")
            read = await client.get("/notes")
        assert_unavailable(write)
        assert_unavailable(bare)
        assert read.status_code == 200 and read.json() == {"count": 0}
    finally:
        keeper.close()
    assert _rows(path) == []


def _sqlite_error(sql: str, path: Path, *, hold: bool = False, read_only: bool = False) -> Any:
    """The real driver exception for ``sql`` on a database in the given state."""
    uri = f"file:{path}?mode=ro" if read_only else f"file:{path}"
    holder = sqlite3.connect(path, isolation_level=None) if hold else None
    conn = sqlite3.connect(uri, uri=True, timeout=0.05, isolation_level=None)
    try:
        if holder is not None:
            holder.execute("BEGIN EXCLUSIVE")
        conn.execute(sql)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
        if holder is not None:
            holder.close()
    raise AssertionError(f"{sql} did not fail")


def _pg_error(cls: type[Exception]) -> DBAPIError:
    """What SQLAlchemy raises for an asyncpg error: its dialect's adapter wraps the original."""
    original = cls("the server said no")
    adapted = AsyncAdapt_asyncpg_dbapi.Error("the server said no", original)
    return DBAPIError("UPDATE t SET x = 1", {}, adapted)


def test_which_database_errors_are_temporary(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    _create(path)
    locked = _sqlite_error("BEGIN IMMEDIATE", path, hold=True)
    read_only = _sqlite_error("INSERT INTO notes VALUES ('a', 'b')", path, read_only=True)
    missing = _sqlite_error("SELECT * FROM nowhere", path)
    assert "locked" in str(locked) and "readonly" in str(read_only)
    assert is_database_unavailable(OperationalError("BEGIN", {}, locked))
    assert is_database_unavailable(OperationalError("INSERT", {}, read_only))
    # A bug is not an outage: a missing table stays a 500.
    assert not is_database_unavailable(OperationalError("SELECT", {}, missing))
    assert not is_database_unavailable(IntegrityError("INSERT", {}, sqlite3.IntegrityError()))
    assert not is_database_unavailable(RuntimeError("database is locked"))

    for temporary in (
        asyncpg.exceptions.LockNotAvailableError,  # lock_timeout
        asyncpg.exceptions.ReadOnlySQLTransactionError,  # a read-only transaction or replica
        asyncpg.exceptions.QueryCanceledError,  # statement_timeout
        asyncpg.exceptions.SerializationError,
        asyncpg.exceptions.DeadlockDetectedError,
        asyncpg.exceptions.AdminShutdownError,
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.TooManyConnectionsError,
    ):
        assert is_database_unavailable(_pg_error(temporary)), temporary
    for lasting in (
        asyncpg.exceptions.UndefinedTableError,
        asyncpg.exceptions.UniqueViolationError,
        asyncpg.exceptions.SyntaxOrAccessError,
    ):
        assert not is_database_unavailable(_pg_error(lasting)), lasting
