"""The cart service application."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from shopkit.app import create_service_app

from shop_cart.routes import internal, public
from shop_cart.settings import CartSettings


def create_app(settings: CartSettings | None = None) -> FastAPI:
    settings = settings or CartSettings()
    return create_service_app(
        settings,
        title="Sweet Slice cart",
        description="A cart per customer, checked against and priced from the catalog.",
        routers=[public, internal],
        migrations=Path(__file__).parent / "migrations",
        peers={"product": settings.product_url},
        outbox=None,
    )
