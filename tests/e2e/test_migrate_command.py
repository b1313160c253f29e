"""``python -m shop_<name>.main migrate``: what the charts' migration Jobs run.

The Job can start before the database it migrates (both are in one Helm release), so the command
waits for it; and it must fail, not hang, when the database never comes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from shopkit.launcher import free_port

from tests.e2e.support import PostgresServer

SERVICES_WITH_DATABASE = ["user", "product", "cart", "order", "payment", "notification"]


def _migrate(service: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"shop_{service}.main", "migrate", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("service", SERVICES_WITH_DATABASE)
def test_migrate_creates_the_schema_and_exits(service: str, tmp_path: Path) -> None:
    prefix = f"SWEETSLICE_{service.upper()}_"
    done = _migrate(service, {f"{prefix}DATA_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    database = tmp_path / service / "db.sqlite3"
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "alembic_version" in tables
    assert len(tables) > 1
    # A second run finds the schema at head and changes nothing.
    again = _migrate(service, {f"{prefix}DATA_DIR": str(tmp_path)})
    assert again.returncode == 0, again.stderr


async def _schema_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT version_num FROM alembic_version"))
    finally:
        await conn.close()


@dataclass
class _Started:
    proc: subprocess.Popen[str]
    url: str
    # What the process writes after it said it was waiting, read as it comes (by `reader`,
    # until the process closes its stderr) so that a full pipe never blocks it.
    later: list[str]
    reader: threading.Thread


@contextlib.contextmanager
def _started_before_its_database(
    service: str, command: list[str], env: dict[str, str] | None = None
) -> Iterator[_Started]:
    """Runs `command` against `service`'s PostgreSQL database, which is not up yet, and starts
    the database only once the process has said it is waiting for it."""
    postgres = PostgresServer()
    url = postgres.url_template.format(service=service)
    full_env = {**os.environ, **(env or {}), f"SWEETSLICE_{service.upper()}_DATABASE_URL": url}
    with subprocess.Popen(command, env=full_env, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "database not reachable yet" in line:
                    break
            else:
                pytest.fail(f"{command} exited without waiting for the database")
            later: list[str] = []
            reader = threading.Thread(target=lambda: later.extend(proc.stderr or ()), daemon=True)
            reader.start()
            postgres.start()
            yield _Started(proc, url, later, reader)
        finally:
            proc.kill()
            postgres.stop()


def test_migrate_waits_for_a_database_that_starts_later() -> None:
    command = [sys.executable, "-m", "shop_order.main", "migrate", "--wait-seconds", "90"]
    with _started_before_its_database("order", command) as started:
        exit_code = started.proc.wait(timeout=120)
        started.reader.join(timeout=10)
        rest = "".join(started.later)
        assert exit_code == 0, rest
        assert "migrated order to head" in rest
        assert asyncio.run(_schema_version(started.url))


def test_migrate_gives_up_when_the_database_never_comes() -> None:
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    began = time.monotonic()
    done = _migrate("cart", {"SWEETSLICE_CART_DATABASE_URL": url}, "--wait-seconds", "3")
    assert done.returncode != 0
    assert time.monotonic() - began < 60
    assert "ConnectionRefusedError" in done.stderr


def test_the_gateway_has_no_migrate_command() -> None:
    done = _migrate("gateway", {})
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


def test_a_service_started_before_its_database_waits_for_it() -> None:
    port = free_port()
    env = {"SWEETSLICE_PRODUCT_PORT": str(port), "SWEETSLICE_PRODUCT_SEED_CATALOG": "false"}
    with _started_before_its_database("product", [sys.executable, "-m", "shop_product.main"], env):
        # Ready as far as its own database goes (its peers are not running here).
        deadline = time.monotonic() + 60
        checks: dict[str, str] = {}
        while time.monotonic() < deadline and checks.get("database") != "ok":
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                checks = answer.json().get("checks", {})
            except httpx.TransportError:
                time.sleep(0.5)
        assert checks.get("database") == "ok", checks
