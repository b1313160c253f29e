"""Gateway settings: upstream addresses, limits and CORS, from ``SWEETSLICE_GATEWAY_*``."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from shopkit.discovery import split_addresses
from shopkit.settings import ServiceSettings

UPSTREAMS = ("user", "product", "cart", "order", "notification")


def _split_list(value: Any) -> Any:
    # Environment variables carry lists as "a,b"; JSON arrays would be easy to get wrong in a shell.
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SWEETSLICE_GATEWAY_", frozen=True, extra="ignore")

    service_name: str = "gateway"
    port: int = Field(default=8080, ge=1, le=65535)

    product_url: str = "http://127.0.0.1:8102"
    cart_url: str = "http://127.0.0.1:8103"
    order_url: str = "http://127.0.0.1:8104"
    notification_url: str = "http://127.0.0.1:8106"

    # Whole exchange with an upstream (connect, send, answer, body); past it the client gets 504.
    upstream_timeout_seconds: float = Field(default=10.0, gt=0)
    # A peer that does not even accept a connection in this time counts as unreachable (503).
    upstream_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    upstream_connections_per_host: int = Field(default=256, ge=1)

    # Token bucket per client (token subject, else address); 0 for either disables limiting.
    rate_limit_per_second: float = Field(default=50.0, ge=0)
    rate_limit_burst: int = Field(default=100, ge=0)
    rate_limit_max_clients: int = Field(default=100_000, ge=1)
    # Requests being proxied at once; beyond it new ones are shed with 503.
    max_in_flight: int = Field(default=512, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=0)

    cors_allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    cors_allow_credentials: bool = False
    cors_max_age_seconds: int = Field(default=600, ge=0)

    openapi_cache_seconds: float = Field(default=30.0, ge=0)
    # Upstreams whose /livez must answer for /readyz; the JWKS is always required. Only accounts
    # and the catalog by default: a gateway pulled out of service because notification is down
    # would stop browsing too, which API.md forbids.
    ready_upstreams: Annotated[tuple[str, ...], NoDecode] = ("user", "product")
    # Verified tokens remembered so a busy client does not pay a signature check per request.
    token_cache_size: int = Field(default=10_000, ge=0)
    token_cache_seconds: float = Field(default=30.0, ge=0)
    # Continue a client's W3C trace context (traceparent) instead of starting a new trace with a
    # link to it. Only behind a proxy of your own that sets or vets the header: a client could
    # otherwise choose trace ids and force sampling on or off (shopkit.tracing).
    trust_client_trace_context: bool = False

    @field_validator("cors_allowed_origins", "ready_upstreams", mode="before")
    @classmethod
    def _lists_from_env(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("user_url", "product_url", "cart_url", "order_url", "notification_url")
    @classmethod
    def _http_urls(cls, value: str) -> str:
        # One address per instance, comma-separated: requests are spread over them.
        urls = split_addresses(value)
        if not urls or not all(url.startswith(("http://", "https://")) for url in urls):
            raise ValueError(
                "an upstream address must be http:// or https:// URLs, comma-separated"
            )
        return ",".join(urls)

    @model_validator(mode="after")
    def _check_lists(self) -> Self:
        unknown = set(self.ready_upstreams) - set(UPSTREAMS)
        if unknown:
            raise ValueError(f"ready_upstreams names unknown services: {sorted(unknown)}")
        if self.cors_allow_credentials and "*" in self.cors_allowed_origins:
            raise ValueError("CORS: '*' cannot be combined with credentials; list the origins")
        return self

    def unsafe_defaults(self) -> list[str]:
        # The gateway has no database and never uses the internal token (it strips it).
        return [
            name
            for name in super().unsafe_defaults()
            if name not in {"database_url", "internal_token"}
        ]

    def upstream_urls(self) -> dict[str, str]:
        return {
            "user": self.user_url,
            "product": self.product_url,
            "cart": self.cart_url,
            "order": self.order_url,
            "notification": self.notification_url,
        }
