"""Metrics can be switched off at the gateway: nothing measured, and no /metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY


async def test_metrics_off_measures_nothing_and_hides_the_route(
    gateway_factory: Any,
) -> None:
    labels = {"service": "gateway-unmetered", "method": "GET", "route": "product"}
    async with gateway_factory(metrics_enabled=False, service_name="gateway-unmetered") as client:
        assert (await client.get("/api/v1/products/p1")).status_code == 200
        scraped = await client.get("/metrics")
        assert scraped.status_code == 404
        assert scraped.headers["content-type"] == "application/problem+json"
        assert (await client.get("/livez")).status_code == 200
    assert (
        REGISTRY.get_sample_value("shop_http_requests_total", {**labels, "status": "200"}) is None
    )
    assert (
        REGISTRY.get_sample_value("shop_http_in_flight_requests", {"service": labels["service"]})
        is None
    )


async def test_metrics_on_counts_proxied_requests(gateway_factory: Any) -> None:
    labels = {"service": "gateway-metered", "method": "GET", "route": "product"}
    async with gateway_factory(service_name="gateway-metered") as client:
        for _ in range(2):
            assert (await client.get("/api/v1/products/p1")).status_code == 200
        scraped = await client.get("/metrics")
        assert scraped.status_code == 200
    assert REGISTRY.get_sample_value("shop_http_requests_total", {**labels, "status": "200"}) == 2
