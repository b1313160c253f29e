"""Configuration of the cart service (environment prefix ``SWEETSLICE_CART_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from shopkit.settings import ServiceSettings


class CartSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SWEETSLICE_CART_", frozen=True, extra="ignore")

    service_name: str = "cart"
    port: int = Field(default=8103, ge=1, le=65535)
    product_url: str = "http://127.0.0.1:8102"
    # Distinct products per cart; keeps one catalog lookup per render (the lookup takes 100 ids).
    max_lines: int = Field(default=50, ge=1, le=99)
