"""Health endpoints, metrics labels and settings."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from shop_gateway.settings import GatewaySettings
from shopkit.testing import TokenFactory, free_port, serve_jwks


async def test_livez(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_when_everything_answers(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    # By default only accounts and the catalog decide readiness: browsing must outlive the rest.
    assert checks == dict.fromkeys(["jwks", "user", "product"], "ok")


async def test_readyz_names_a_failing_upstream(gateway_factory: Any) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with gateway_factory(product_url=closed) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["detail"] == "failing: product"
    assert body["checks"]["product"].startswith("failing")
    assert body["checks"]["user"] == "ok"


async def test_readyz_ignores_upstreams_not_asked_for(gateway_factory: Any) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with gateway_factory(cart_url=closed) as client:
        assert (await client.get("/readyz")).status_code == 200
    async with gateway_factory(cart_url=closed, ready_upstreams="product,cart") as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["detail"] == "failing: cart"


async def test_readyz_needs_the_signing_keys(gateway_factory: Any) -> None:
    # A server with keys but no /livez stands in for a user service that is half there.
    async with serve_jwks(TokenFactory()) as keys_only, gateway_factory(user_url=keys_only) as c:
        with_keys = await c.get("/readyz")
    assert with_keys.status_code == 503
    assert with_keys.json()["detail"] == "failing: user"
    assert with_keys.json()["checks"]["jwks"] == "ok"

    closed = f"http://127.0.0.1:{free_port()}"
    async with gateway_factory(user_url=closed, ready_upstreams="product") as client:
        without_keys = await client.get("/readyz")
    assert without_keys.status_code == 503
    assert without_keys.json()["detail"] == "failing: jwks"


async def test_metrics_label_routes_by_service_never_by_raw_path(
    gateway: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    await gateway.get("/api/v1/products/unique-product-id-123")
    await gateway.get("/random/walk/unique-path-456")
    await gateway.get("/api/v1/cart", headers=tokens.headers())
    await gateway.request("PROPFIND", "/api/v1/products/p1")
    text = (await gateway.get("/metrics")).text
    assert 'service="gateway"' in text
    assert 'route="product"' in text
    assert 'route="cart"' in text
    assert 'route="unmatched"' in text
    assert 'method="OTHER"' in text
    assert "unique-product-id-123" not in text
    assert "unique-path-456" not in text
    assert "PROPFIND" not in text


def test_settings_defaults_and_list_parsing() -> None:
    defaults = GatewaySettings()
    assert defaults.port == 8080
    assert defaults.upstream_timeout_seconds == 10
    assert defaults.rate_limit_per_second == 50
    assert defaults.rate_limit_burst == 100
    assert defaults.max_in_flight == 512
    assert defaults.max_body_bytes == 1024 * 1024
    assert defaults.cors_allowed_origins == ()
    assert defaults.product_url == "http://127.0.0.1:8102"
    assert defaults.notification_url == "http://127.0.0.1:8106"

    # Lists arrive from the environment as comma-separated text.
    from_text = GatewaySettings.model_validate(
        {"cors_allowed_origins": "https://a.example, https://b.example"}
    )
    assert from_text.cors_allowed_origins == ("https://a.example", "https://b.example")


def test_settings_refuse_wildcard_cors_with_credentials() -> None:
    with pytest.raises(ValidationError, match="credentials"):
        GatewaySettings(cors_allowed_origins=("*",), cors_allow_credentials=True)
    assert GatewaySettings(cors_allowed_origins=("*",)).cors_allowed_origins == ("*",)


def test_settings_validate_addresses_and_names() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(product_url="127.0.0.1:8102")
    with pytest.raises(ValidationError):
        GatewaySettings(ready_upstreams=("payment",))


def test_production_needs_no_database_or_internal_token() -> None:
    settings = GatewaySettings(environment="production")
    assert settings.unsafe_defaults() == []
