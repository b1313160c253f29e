"""Configuration of the payment service (environment prefix ``SWEETSLICE_PAYMENT_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from shopkit.settings import ServiceSettings


class PaymentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SWEETSLICE_PAYMENT_", frozen=True, extra="ignore")

    service_name: str = "payment"
    port: int = Field(default=8105, ge=1, le=65535)
    provider: Literal["sandbox"] = "sandbox"
    # Fault injection for the reliability tests: this fraction of provider charge calls answers
    # 503 before anything is recorded, as a flaky card processor would.
    fault_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
