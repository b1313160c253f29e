"""Byte-exact forwarding, streaming both ways, body limits and upstream failures."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from shopkit.discovery import FAILURES_TO_EJECT
from shopkit.testing import TokenFactory, free_port

BIG_SHA256_HEX_LEN = 64


async def test_post_body_and_query_string_arrive_intact(
    gateway: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    body = json.dumps(
        {"payment_token": "tok_visa", "note": "caf\u00e9 \u2615", "n": 10**30}
    ).encode()
    target = "/api/v1/orders?q=caf%C3%A9&x=%2F%20+y&empty=&flag&a=1&a=2"
    response = await gateway.post(
        target,
        content=body,
        headers={**tokens.headers(), "Content-Type": "application/json", "Idempotency-Key": "k-1"},
    )
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["target"] == target
    assert echoed["body_len"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()
    headers = {k.lower(): v for k, v in echoed["headers"]}
    assert headers["content-type"] == "application/json"
    assert headers["idempotency-key"] == "k-1"


async def test_streamed_upload_within_the_limit_is_forwarded(
    gateway: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    chunks = [bytes([i]) * 100_000 for i in range(5)]

    async def upload() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    response = await gateway.put(
        "/api/v1/cart/items/p1", content=upload(), headers=tokens.headers()
    )
    assert response.status_code == 200
    assert response.json()["body_len"] == 500_000
    assert response.json()["body_sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()


async def test_declared_oversized_body_is_413_at_once(
    gateway_factory: Any, upstreams: dict[str, Any], raw: Any
) -> None:
    async with gateway_factory(max_body_bytes=1024) as client:
        started = time.monotonic()
        # The body is never sent: the gateway must answer from the declared length alone.
        status, head = await raw(
            client,
            b"POST /api/v1/auth/register HTTP/1.1\r\nHost: gw\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n",
        )
        assert status == 413
        assert time.monotonic() - started < 2
        assert b"application/problem+json" in head
        assert b"x-request-id" in head.lower()
    assert upstreams["user"].calls == []


async def test_chunked_body_over_the_limit_is_413(gateway_factory: Any) -> None:
    async with gateway_factory(max_body_bytes=64 * 1024) as client:

        async def upload() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"x" * 16 * 1024

        response = await client.post("/api/v1/auth/register", content=upload())
        assert response.status_code == 413
        assert response.json()["type"].endswith("/payload-too-large")

        single = await client.post("/api/v1/auth/login", content=b"y" * (64 * 1024 + 1))
        assert single.status_code == 413

        # A body exactly at the limit is fine.
        ok = await client.post("/api/v1/auth/login", content=b"z" * (64 * 1024))
        assert ok.status_code == 200
        assert ok.json()["body_len"] == 64 * 1024


async def test_slow_upstream_is_504(gateway_factory: Any) -> None:
    async with gateway_factory(upstream_timeout_seconds=0.3) as client:
        started = time.monotonic()
        response = await client.get("/api/v1/products/slow")
        elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert elapsed < 2
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 504
    assert response.headers["retry-after"]
    assert response.headers["x-request-id"]


async def test_unreachable_upstream_is_503_with_retry_after(
    gateway_factory: Any, tokens: TokenFactory
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with gateway_factory(order_url=closed) as client:
        response = await client.get("/api/v1/orders", headers=tokens.headers())
        # The other services are unaffected.
        catalog = await client.get("/api/v1/products")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["type"].endswith("/upstream-unavailable")
    assert "order" in response.json()["detail"]
    assert catalog.status_code == 200


async def test_requests_are_spread_over_instances_and_skip_one_that_is_down(
    gateway_factory: Any, upstreams: dict[str, Any], tokens: TokenFactory, another_instance: Any
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with (
        another_instance("product") as twin,
        gateway_factory(
            product_url=f"{upstreams['product'].url},{twin.url}",
            cart_url=f"{closed},{upstreams['cart'].url}",
        ) as client,
    ):
        reads = [await client.get(f"/api/v1/products/p{i}") for i in range(6)]
        # A write with no key too: a refused connection means the instance never saw it.
        writes = [
            await client.post("/api/v1/cart/items", json={}, headers=tokens.headers())
            for _ in range(3)
        ]
    assert [r.status_code for r in reads + writes] == [200] * 9
    assert len(upstreams["product"].calls) == 3 and len(twin.calls) == 3
    assert upstreams["cart"].calls == ["POST /api/v1/cart/items"] * 3


async def test_an_instance_that_keeps_answering_500_is_passed_over_but_503_is_not(
    gateway_factory: Any, upstreams: dict[str, Any], tokens: TokenFactory, another_instance: Any
) -> None:
    async with (
        another_instance("product") as broken,
        another_instance("cart") as shedding,
        gateway_factory(
            product_url=f"{upstreams['product'].url},{broken.url}",
            cart_url=f"{upstreams['cart'].url},{shedding.url}",
        ) as client,
    ):
        broken.fail_with, shedding.fail_with = 500, 503
        reads = [(await client.get(f"/api/v1/products/p{i}")).status_code for i in range(20)]
        carts = [
            (await client.get("/api/v1/cart", headers=tokens.headers())).status_code
            for _ in range(20)
        ]
    # Taken in turn until its fifth failure in a row, then left alone (for 10 s).
    assert len(broken.calls) == FAILURES_TO_EJECT
    assert reads.count(500) == FAILURES_TO_EJECT and reads.count(200) == 20 - FAILURES_TO_EJECT
    # A 503 is a service's deliberate answer (a dependency down, load shed): no ejection.
    assert len(shedding.calls) == 10 and carts.count(503) == 10


async def test_large_answer_streams_through_intact(gateway: httpx.AsyncClient) -> None:
    digest = hashlib.sha256()
    size = 0
    async with gateway.stream("GET", "/api/v1/products/big") as response:
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            digest.update(chunk)
            size += len(chunk)
    expected = hashlib.sha256(_big_body()).hexdigest()
    assert size == 5 * 1024 * 1024
    assert digest.hexdigest() == expected
    assert len(expected) == BIG_SHA256_HEX_LEN


async def test_answers_are_relayed_as_they_are_produced(gateway: httpx.AsyncClient) -> None:
    """The first part of a slow answer reaches the client before the upstream has finished."""
    started = time.monotonic()
    async with gateway.stream("GET", "/api/v1/products/trickle") as response:
        parts = response.aiter_raw()
        first = await anext(parts)
        first_at = time.monotonic() - started
        rest = b"".join([chunk async for chunk in parts])
    assert first == b"first;"
    assert rest == b"second"
    assert first_at < 0.5  # the upstream pauses 0.6 s between the parts


def _big_body() -> bytes:
    import random

    return random.Random(7).randbytes(5 * 1024 * 1024)
