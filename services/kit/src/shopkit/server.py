"""Run a service under uvicorn (httptools + uvloop), the way ``make up`` and the images do."""

from __future__ import annotations

import uvicorn

from shopkit.settings import ServiceSettings


def serve(factory: str, settings: ServiceSettings, *, workers: int = 1) -> None:
    """``factory`` is the import string of the service's ``create_app`` (read settings from env)."""
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
