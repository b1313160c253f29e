"""The payment service application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from shopkit.app import Runtime, create_service_app
from shopkit.metrics import DECLINE_REASONS, PAYMENT_DECLINES, prime

from shop_payment.models import outbox
from shop_payment.provider import build_provider
from shop_payment.routes import router
from shop_payment.settings import PaymentSettings


def create_app(settings: PaymentSettings | None = None) -> FastAPI:
    settings = settings or PaymentSettings()

    @asynccontextmanager
    async def setup(app: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
        app.state.provider = build_provider(settings)
        prime(PAYMENT_DECLINES, DECLINE_REASONS)
        # Payment serves internal routes only and verifies no user tokens, so the user
        # service's key set is no reason for it to be unready.
        runtime.checks.pop("jwks", None)
        yield

    return create_service_app(
        settings,
        title="Sweet Slice payment",
        description="Charges and refunds through a payment provider, idempotent by key.",
        routers=[router],
        migrations=Path(__file__).parent / "migrations",
        outbox=outbox,
        setup=setup,
    )
