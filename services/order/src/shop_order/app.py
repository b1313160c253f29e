"""The order service application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from shopkit.app import Runtime, create_service_app

from shop_order import routes
from shop_order.clients import CartClient, PaymentClient, ProductClient, UserClient
from shop_order.models import outbox
from shop_order.saga import OrderSaga
from shop_order.settings import OrderSettings


def create_app(settings: OrderSettings | None = None) -> FastAPI:
    settings = settings or OrderSettings()

    @asynccontextmanager
    async def setup(app: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
        saga = OrderSaga(
            db=runtime.db,
            settings=settings,
            users=runtime.client(UserClient),
            carts=runtime.client(CartClient),
            products=runtime.client(ProductClient),
            payments=runtime.client(PaymentClient),
        )
        app.state.saga = saga
        if settings.recovery_enabled:
            runtime.spawn(saga.run_recovery(), "order-saga-recovery")
        yield

    return create_service_app(
        settings,
        title="Sweet Slice order",
        description="Orders and the checkout saga: reserve stock, charge, confirm, compensate.",
        routers=[routes.router, routes.internal_router],
        migrations=Path(__file__).parent / "migrations",
        peers={
            "product": settings.product_url,
            "cart": settings.cart_url,
            "payment": settings.payment_url,
        },
        outbox=outbox,
        setup=setup,
    )
