"""The user service application: accounts, login, access tokens and their public keys."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from shopkit.app import Runtime, create_service_app
from sqlalchemy.exc import IntegrityError

from shop_user import routes, service
from shop_user.passwords import Passwords
from shop_user.settings import UserSettings
from shop_user.tokens import TokenSigner

log = logging.getLogger("shop_user.app")

JwksFetcher = Callable[[], Coroutine[Any, Any, dict[str, Any]]]


def create_app(settings: UserSettings | None = None) -> FastAPI:
    cfg = settings or UserSettings()

    @asynccontextmanager
    async def setup(app: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
        app.state.signer = await asyncio.to_thread(TokenSigner.from_settings, cfg)
        app.state.passwords = await Passwords.create(
            time_cost=cfg.argon2_time_cost,
            memory_cost_kib=cfg.argon2_memory_cost_kib,
            parallelism=cfg.argon2_parallelism,
            max_concurrency=cfg.argon2_max_concurrency,
        )
        await bootstrap_admin(cfg, runtime, app.state.passwords)
        yield

    def own_jwks(_: Runtime) -> JwksFetcher:
        # The service verifies its own tokens (/users/me) from its key in memory: no HTTP call
        # to itself. The signer is set by the setup hook before the first request is served.
        async def fetch() -> dict[str, Any]:
            signer: TokenSigner = app.state.signer
            return signer.jwks

        return fetch

    app = create_service_app(
        cfg,
        title="Sweet Slice user service",
        description="Accounts, argon2id password hashing, login and EdDSA access tokens.",
        routers=[routes.public, routes.keys, routes.internal],
        migrations=Path(__file__).parent / "migrations",
        peers={},
        outbox=None,
        jwks=own_jwks,
        setup=setup,
    )
    return app


async def bootstrap_admin(settings: UserSettings, runtime: Runtime, passwords: Passwords) -> None:
    """Creates the administrator from SWEETSLICE_ADMIN_EMAIL and _PASSWORD when both are set."""
    credentials = settings.admin_credentials
    if credentials is None:
        if settings.admin_email is not None or settings.admin_password is not None:
            log.warning(
                "no administrator bootstrap: set both SWEETSLICE_ADMIN_EMAIL and "
                "SWEETSLICE_ADMIN_PASSWORD"
            )
        return
    email, password = credentials
    # Savepoints absorb a concurrent start's insert; a conflict surfacing at commit (another
    # backend, deferred checks) is absorbed by running the idempotent bootstrap once more.
    for attempt in (1, 2):
        try:
            async with runtime.db.session() as session:
                await service.ensure_admin(email, password, session=session, passwords=passwords)
            return
        except IntegrityError:
            if attempt == 2:
                raise
