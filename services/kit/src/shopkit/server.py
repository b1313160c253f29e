"""Run a service under uvicorn (httptools + uvloop), the way ``make up`` and the images do."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from shopkit.consul import deregister_command
from shopkit.logs import configure_logging
from shopkit.migrations import migrate_command
from shopkit.settings import ServiceSettings


def main(
    factory: str,
    settings: ServiceSettings,
    *,
    migrations: Path | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """A service's command line: serve (the default); ``migrate`` its database to head and exit,
    which the charts run as a Job before an upgrade rolls the pods; or ``deregister`` this
    instance from Consul, which the charts run as the preStop hook."""
    parser = argparse.ArgumentParser(prog=f"python -m shop_{settings.service_name}.main")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve HTTP (the default)")
    if migrations is not None:
        migrate = commands.add_parser("migrate", help="migrate the database to head and exit")
        migrate.add_argument(
            "--wait-seconds",
            type=float,
            default=300.0,
            help="keep retrying while the database is unreachable, up to this long",
        )
    deregister = commands.add_parser(
        "deregister",
        help="leave the service registry (with discovery=consul), then wait: a preStop hook",
    )
    deregister.add_argument(
        "--drain-seconds",
        type=float,
        default=0.0,
        help="keep the server running this long after leaving, before SIGTERM arrives",
    )
    args = parser.parse_args(argv)
    if args.command == "deregister":
        configure_logging(settings.service_name, settings.log_level, json_lines=settings.log_json)
        asyncio.run(deregister_command(settings, args.drain_seconds))
        return
    if args.command == "migrate" and migrations is not None:
        configure_logging(settings.service_name, settings.log_level, json_lines=settings.log_json)
        asyncio.run(migrate_command(settings, migrations, wait_seconds=args.wait_seconds))
        return
    serve(factory, settings)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve(factory: str, settings: ServiceSettings, *, workers: int | None = None) -> None:
    """``factory`` is the import string of the service's ``create_app`` (read settings from env).

    ``workers`` defaults to the ``workers`` setting. With more than one, each worker counts its
    own requests, so they must write to one Prometheus multiprocess directory that /metrics
    reads back as a whole; a fresh one is made unless the environment names one already."""
    count = workers or settings.workers
    made: str | None = None
    if count > 1 and not os.environ.get(MULTIPROC_ENV):
        # Per process, not under the data directory: replicas of a service share that one, and
        # files left by an earlier run would be counted again.
        made = tempfile.mkdtemp(prefix=f"sweetslice-{settings.service_name}-metrics-")
        # Workers are spawned, not forked: they read it from the environment at import.
        os.environ[MULTIPROC_ENV] = made
    try:
        uvicorn.run(
            factory,
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=count,
            loop="uvloop",
            http="httptools",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
