"""The app factory every service uses: one lifespan owns every resource the service holds.

Nothing is created at import time. A service calls :func:`create_service_app` with its settings
and, optionally, a ``setup`` context that adds its own background work once the shared resources
(database, HTTP session, token verifier, broker, outbox relay) are up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from fastapi import APIRouter, FastAPI
from sqlalchemy import Table

from shopkit import VERSION, tracing
from shopkit.auth import TokenVerifier, remote_jwks
from shopkit.db import Database
from shopkit.deadline import detached_context
from shopkit.discovery import Discovery
from shopkit.errors import install_problem_handlers
from shopkit.health import Check, metrics_router
from shopkit.health import router as health_router
from shopkit.http import ServiceClient, new_client_session
from shopkit.logs import configure_logging
from shopkit.messaging import (
    Broker,
    Inbox,
    OutboxRelay,
    inbox_audit_router,
    outbox_audit_router,
)
from shopkit.migrations import migrate_when_reachable
from shopkit.observability import RequestContextMiddleware, RequestGuardMiddleware, prime_peer
from shopkit.registry import discovery_for
from shopkit.resilience import PeerGuard
from shopkit.settings import ServiceSettings

log = logging.getLogger("shopkit.app")

C = TypeVar("C", bound=ServiceClient)


@dataclass
class Runtime:
    """Resources of one running service, owned by its lifespan."""

    settings: ServiceSettings
    db: Database
    http: aiohttp.ClientSession
    discovery: Discovery
    verifier: TokenVerifier
    broker: Broker | None = None
    outbox: OutboxRelay | None = None
    inbox: Inbox | None = None
    checks: dict[str, Check] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    guards: dict[str, PeerGuard] = field(default_factory=dict)

    def client(self, cls: type[C]) -> C:
        """A typed client whose calls share the peer's breaker, bulkhead and retry budget."""
        guard = self.guards.get(cls.peer)
        if guard is None:
            guard = PeerGuard(self.settings.service_name, cls.peer, self.settings.resilience)
            self.guards[cls.peer] = guard
            prime_peer(self.settings.service_name, cls.peer)
        return cls(
            self.http,
            self.discovery,
            timeout=self.settings.http_timeout_seconds,
            internal_token=self.settings.internal_token.get_secret_value(),
            guard=guard,
        )

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Background work that lives as long as the service and is cancelled at shutdown.

        It never inherits the deadline of a request that happens to start it."""
        task = asyncio.create_task(coro, name=name, context=detached_context())
        task.add_done_callback(_log_crash)
        self.tasks.append(task)


def _log_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s died", task.get_name(), exc_info=task.exception())


Setup = Callable[[FastAPI, Runtime], AbstractAsyncContextManager[None]]


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Iterable[APIRouter],
    migrations: Path | None,
    peers: Mapping[str, str] | None = None,
    outbox: Table | None = None,
    inbox: Table | None = None,
    use_broker: bool = False,
    jwks: Callable[[Runtime], Callable[[], Coroutine[Any, Any, dict[str, Any]]]] | None = None,
    setup: Setup | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.service_name, settings.log_level, json_lines=settings.log_json)
        db = Database(
            settings.effective_database_url,
            pool_size=settings.database_pool_size,
            sqlite_synchronous=settings.sqlite_synchronous,
            lock_timeout=settings.database_lock_timeout_seconds,
        )
        if migrations is not None:
            await migrate_when_reachable(
                db, migrations, wait_seconds=settings.startup_database_wait_seconds
            )
        http = new_client_session()
        # Entered first and left first: with Consul, this instance leaves the registry before
        # anything it needs to serve is closed.
        registry = AsyncExitStack()
        discovery = await registry.enter_async_context(
            discovery_for(settings, {"user": settings.user_url, **(peers or {})})
        )
        for peer in peers or {}:
            # Clients made on first use still show their peer (at 0, breaker closed) from now.
            prime_peer(settings.service_name, peer)
        runtime = Runtime(
            settings=settings,
            db=db,
            http=http,
            discovery=discovery,
            verifier=TokenVerifier(
                lambda: fetch_jwks(),  # noqa: PLW0108 - bound below, after runtime exists
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                leeway=settings.jwt_leeway_seconds,
            ),
        )
        fetch_jwks = (
            jwks(runtime)
            if jwks
            else remote_jwks(http, discovery, timeout=settings.http_timeout_seconds)
        )
        runtime.checks["database"] = db.ping
        runtime.checks["jwks"] = runtime.verifier.check
        if use_broker or outbox is not None:
            runtime.broker = Broker(settings.nats_url, name=settings.service_name)
            await runtime.broker.start()
            runtime.checks["broker"] = runtime.broker.check
        if outbox is not None:
            assert runtime.broker is not None
            runtime.outbox = OutboxRelay(db, outbox, runtime.broker)
            runtime.spawn(runtime.outbox.run(), "outbox-relay")
        if inbox is not None:
            runtime.inbox = Inbox(db, inbox)
        app.state.runtime = runtime
        app.state.db = db
        app.state.verifier = runtime.verifier
        app.state.checks = runtime.checks
        app.state.internal_token = settings.internal_token.get_secret_value()
        tracing.start(settings.service_name)
        try:
            if setup is not None:
                async with setup(app, runtime):
                    yield
            else:
                yield
        finally:
            await registry.aclose()
            for task in runtime.tasks:
                task.cancel()
            await asyncio.gather(*runtime.tasks, return_exceptions=True)
            if runtime.broker is not None:
                await runtime.broker.close()
            await http.close()
            await db.dispose()
            # Last, so spans of the shutdown itself are flushed too.
            await tracing.stop()

    app = FastAPI(
        title=title,
        description=description,
        version=VERSION,
        lifespan=lifespan,
        docs_url="/docs" if settings.environment == "development" else None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    app.add_middleware(RequestGuardMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        RequestContextMiddleware,
        service=settings.service_name,
        metrics=settings.metrics_enabled,
    )
    # Outermost, so the access log line and every error handler run inside the request's span.
    app.add_middleware(tracing.TracingMiddleware)
    app.include_router(health_router)
    if settings.metrics_enabled:
        app.include_router(metrics_router)
    for router in routers:
        app.include_router(router)
    # What the service published and consumed, for checkers (docs/internal-api.md).
    if outbox is not None:
        app.include_router(outbox_audit_router(outbox))
    if inbox is not None:
        app.include_router(inbox_audit_router(inbox))
    return app
