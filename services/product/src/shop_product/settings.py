"""Settings of the product service (catalog and inventory)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from shopkit.settings import ServiceSettings


class ProductSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SWEETSLICE_PRODUCT_", frozen=True, extra="ignore")

    service_name: str = "product"
    port: int = Field(default=8102, ge=1, le=65535)

    # How long reserved units stay held for an order that neither commits nor releases them.
    reservation_ttl_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    # The expiry sweep: how often it looks, and how many reservations one transaction releases
    # (small batches keep the write lock short so checkouts are not starved behind it).
    reservation_sweep_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    reservation_sweep_batch: int = Field(default=50, ge=1, le=1000)
    # A fresh install gets the bakery catalog, so the shop has something to sell.
    seed_catalog: bool = True
