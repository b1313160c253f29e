"""Run a service under uvicorn (httptools + uvloop), the way ``make up`` and the images do."""

from __future__ import annotations

import os
import shutil
import tempfile

import uvicorn

from shopkit.settings import ServiceSettings

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
