"""Rate limiting per client and load shedding."""

from __future__ import annotations

import asyncio
from typing import Any

from shop_gateway.limits import RateLimiter, retry_after
from shopkit.testing import TokenFactory, eventually


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_refills() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("a")
    assert wait == 0.5
    assert retry_after(wait) == "1"
    assert limiter.acquire("b") == 0.0  # other clients are unaffected
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0


def test_disabled_limiter_allows_everything() -> None:
    for rate, burst in ((0, 100), (50, 0)):
        limiter = RateLimiter(rate, burst)
        assert not limiter.enabled
        assert all(limiter.acquire("a") == 0.0 for _ in range(1000))
        assert len(limiter) == 0


def test_memory_stays_bounded_under_many_clients() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1.0, 5, max_clients=100, clock=clock)
    for i in range(10_000):
        limiter.acquire(f"client-{i}")
        assert len(limiter) <= 100
    # The newest clients keep their buckets: the most recent one is still throttled.
    for _ in range(4):
        limiter.acquire("client-9999")
    assert limiter.acquire("client-9999") > 0


def test_idle_buckets_are_swept() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, 10, clock=clock)
    for i in range(50):
        limiter.acquire(f"c{i}")
    assert len(limiter) == 50
    clock.now += 5  # long enough for every bucket to be full again
    limiter.acquire("newcomer")
    assert len(limiter) == 1


async def test_429_with_retry_after_after_the_burst(
    gateway_factory: Any, upstreams: dict[str, Any], tokens: TokenFactory
) -> None:
    async with gateway_factory(rate_limit_per_second=0.5, rate_limit_burst=3) as client:
        alice = tokens.headers("alice")
        statuses = [(await client.get("/api/v1/cart", headers=alice)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = await client.get("/api/v1/cart", headers=alice)
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert limited.headers["retry-after"] == "2"
        assert limited.headers["x-request-id"]
        assert len(upstreams["cart"].calls) == 3

        # Buckets follow the token's subject, not the connection or the address.
        bob = await client.get("/api/v1/cart", headers=tokens.headers("bob"))
        assert bob.status_code == 200
        # Anonymous calls from the same address have the address's own bucket.
        public = await client.get("/api/v1/products")
        assert public.status_code == 200


async def test_anonymous_clients_are_limited_by_address(gateway_factory: Any) -> None:
    async with gateway_factory(rate_limit_per_second=1, rate_limit_burst=2) as client:
        statuses = [(await client.get("/api/v1/products")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_failed_token_attempts_are_throttled(
    gateway_factory: Any, upstreams: dict[str, Any]
) -> None:
    async with gateway_factory(rate_limit_per_second=1, rate_limit_burst=2) as client:
        bad = {"Authorization": "Bearer forged.token.here"}
        statuses = [(await client.get("/api/v1/cart", headers=bad)).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert upstreams["cart"].calls == []


async def test_load_is_shed_with_503_beyond_max_in_flight(
    gateway_factory: Any, upstreams: dict[str, Any]
) -> None:
    async with gateway_factory(max_in_flight=1, upstream_timeout_seconds=1) as client:
        slow = asyncio.create_task(client.get("/api/v1/products/slow"))
        assert await eventually(lambda: _called(upstreams["product"]))
        shed = await client.get("/api/v1/products/p1")
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == "1"
        assert shed.json()["type"].endswith("/overloaded")
        assert (await slow).status_code == 504
        # Capacity is given back once the slow request is over.
        assert (await client.get("/api/v1/products/p1")).status_code == 200


async def _called(upstream: Any) -> bool:
    return bool(upstream.calls)
