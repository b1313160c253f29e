"""The notification service: consumes order and payment events and emails the customer once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from shopkit.app import Runtime, create_service_app
from shopkit.metrics import DELIVERY_OUTCOMES, NOTIFICATION_DELIVERIES, prime

from shop_notification.events import start_consumers
from shop_notification.mail import create_transport
from shop_notification.models import inbox
from shop_notification.routes import internal, public
from shop_notification.settings import NotificationSettings


def create_app(settings: NotificationSettings | None = None) -> FastAPI:
    settings = settings or NotificationSettings()

    @asynccontextmanager
    async def setup(app: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
        prime(NOTIFICATION_DELIVERIES, DELIVERY_OUTCOMES)
        start_consumers(runtime, settings, create_transport(settings))
        yield

    return create_service_app(
        settings,
        title="Sweet Slice notification",
        description="Emails customers about their orders, exactly once per event.",
        routers=[public, internal],
        migrations=Path(__file__).parent / "migrations",
        peers={"user": settings.user_url},
        inbox=inbox,
        use_broker=True,
        setup=setup,
    )
