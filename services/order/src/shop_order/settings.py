"""Configuration of the order service (environment prefix ``SWEETSLICE_ORDER_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from shopkit.settings import ServiceSettings


class OrderSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SWEETSLICE_ORDER_", frozen=True, extra="ignore")

    service_name: str = "order"
    port: int = Field(default=8104, ge=1, le=65535)
    product_url: str = "http://127.0.0.1:8102"
    cart_url: str = "http://127.0.0.1:8103"
    payment_url: str = "http://127.0.0.1:8105"

    # A saga untouched for this long is presumed abandoned (its request died or timed out) and is
    # driven to a terminal state by the recovery loop. It must exceed the longest request path:
    # a handful of peer calls, each bounded by http_timeout_seconds.
    saga_timeout_seconds: float = Field(default=30.0, gt=0)
    recovery_interval_seconds: float = Field(default=5.0, gt=0)
    recovery_enabled: bool = True
    recovery_batch: int = Field(default=50, ge=1, le=1000)
    # How long a failed order whose charge outcome was unknown keeps being checked for a charge
    # that lands late (a request payment processed after we gave up on it) before it is closed.
    charge_settle_seconds: float = Field(default=120.0, ge=0)
    # Charge calls per checkout: the payment key makes a retry the same charge, and only cheap
    # failures (an error answer, a refused connection) are retried, never a timeout.
    charge_attempts: int = Field(default=2, ge=1, le=5)
    charge_retry_backoff_seconds: float = Field(default=0.05, ge=0)
    commit_attempts: int = Field(default=3, ge=1, le=10)
    commit_backoff_seconds: float = Field(default=0.1, ge=0)
