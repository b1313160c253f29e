"""The request's time budget the gateway gives each upstream, and its in-flight gauge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from shopkit.deadline import BUDGET_HEADER

Received = Callable[[httpx.Response], dict[str, list[str]]]
BUDGET = BUDGET_HEADER.lower()


async def test_the_upstream_is_told_the_time_the_gateway_will_wait(
    gateway_factory: Any, tokens: Any, received: Received
) -> None:
    async with gateway_factory(upstream_timeout_seconds=2.5) as client:
        for path, headers in (
            ("/api/v1/products", {}),
            ("/api/v1/orders", tokens.headers("u-1")),
        ):
            response = await client.get(path, headers=headers)
            assert response.status_code == 200
            (value,) = received(response)[BUDGET]
            # What is left of the 2.5 s upstream timeout once the gateway has done its part.
            assert 2000 < int(value) <= 2500, value


async def test_a_client_cannot_set_the_budget(
    gateway: httpx.AsyncClient, received: Received
) -> None:
    for claimed in ("1", "999999999", "soon"):
        response = await gateway.get("/api/v1/products", headers={BUDGET_HEADER: claimed})
        assert response.status_code == 200
        values = received(response)[BUDGET]
        assert len(values) == 1 and values[0] != claimed
        assert 9000 < int(values[0]) <= 10_000  # the default upstream timeout, 10 s


def _in_flight(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("shop_http_in_flight_requests{") and 'service="gateway"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no in-flight gauge in /metrics")


async def test_in_flight_requests_are_a_gauge(gateway: httpx.AsyncClient) -> None:
    before = _in_flight((await gateway.get("/metrics")).text)
    slow = [asyncio.create_task(gateway.get("/api/v1/products/slow")) for _ in range(3)]
    await asyncio.sleep(1.0)
    during = _in_flight((await gateway.get("/metrics")).text)
    assert [(await s).status_code for s in slow] == [200, 200, 200]
    after = _in_flight((await gateway.get("/metrics")).text)
    assert during == before + 3
    assert after == before


async def test_no_time_left_after_the_gateway_is_a_503_without_a_call(
    gateway_factory: Any, upstreams: dict[str, Any]
) -> None:
    # A timeout below what any call needs: nothing is left once the request reaches the proxy.
    async with gateway_factory(upstream_timeout_seconds=0.004) as client:
        response = await client.get("/api/v1/products")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/deadline-exceeded")
        assert response.headers["retry-after"]
    assert upstreams["product"].calls == []
