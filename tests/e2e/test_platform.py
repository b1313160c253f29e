"""What holds for every process: health, metrics, request ids, input hygiene, the edges."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from shopkit.launcher import DEFAULT_PORTS, SERVICES

from tests.e2e.support import RunningPlatform, assert_problem, new_customer


async def test_health_and_metrics_on_every_process(platform: RunningPlatform) -> None:
    async with httpx.AsyncClient(timeout=10) as raw:
        for name in DEFAULT_PORTS:
            base = platform.url(name)
            live = await raw.get(base + "/livez")
            assert live.status_code == 200, name
            ready = await raw.get(base + "/readyz")
            assert ready.status_code == 200, (name, ready.text)
            metrics = await raw.get(base + "/metrics")
            assert metrics.status_code == 200
            assert "# TYPE" in metrics.text


async def test_request_ids(client: httpx.AsyncClient) -> None:
    mine = f"req-{uuid.uuid4().hex}"
    resp = await client.get("/api/v1/products", headers={"X-Request-ID": mine})
    assert resp.headers["x-request-id"] == mine
    generated = await client.get("/api/v1/products", headers={"X-Request-ID": "bad id;" * 40})
    assert generated.headers["x-request-id"] not in {"", mine}
    missing = await client.get(f"/api/v1/orders/{uuid.uuid4()}")
    assert missing.headers["x-request-id"]


async def test_internal_routes_are_not_reachable_through_the_gateway(
    client: httpx.AsyncClient,
) -> None:
    for path in (
        "/internal/orders/audit",
        "/api/v1/%2e%2e/internal/ledger",
        "/api/v1/products/%2E%2E/%2E%2E/internal/stock-audit",
        "/.well-known/jwks.json",
        "/api/v1/internal/stock-audit",
        "/api/v2/products",
    ):
        resp = await client.get(path)
        assert resp.status_code == 404, (path, resp.status_code)


async def test_services_refuse_calls_without_credentials(platform: RunningPlatform) -> None:
    async with httpx.AsyncClient(timeout=10) as raw:
        for service, path in (
            ("order", "/api/v1/orders"),
            ("cart", "/api/v1/cart"),
            ("notification", "/api/v1/notifications"),
            ("order", "/internal/orders/audit"),
            ("payment", "/internal/ledger"),
            ("product", "/internal/stock-audit"),
        ):
            resp = await raw.get(platform.url(service) + path)
            assert_problem(resp, 401)


async def test_malformed_requests_are_4xx_problems(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client)
    h = customer.headers
    json_ct = {"content-type": "application/json"}
    cases = [
        ("POST", "/api/v1/auth/login", b"[]", json_ct),
        ("POST", "/api/v1/auth/login", b"{", json_ct),
        ("POST", "/api/v1/auth/register", b'{"email": 5}', json_ct),
        ("PUT", f"/api/v1/cart/items/{uuid.uuid4()}", b'{"quantity": 1e308}', {**h, **json_ct}),
        ("PUT", "/api/v1/cart/items/x", b"null", {**h, **json_ct}),
        ("POST", "/api/v1/orders", b"\xff\xfe", {**h, **json_ct, "Idempotency-Key": "k1"}),
        (
            "POST",
            "/api/v1/orders",
            b'{"payment_token": []}',
            {**h, **json_ct, "Idempotency-Key": "k2"},
        ),
        ("GET", "/api/v1/products?limit=-1", b"", {}),
        ("GET", "/api/v1/orders?limit=1000000000", b"", h),
        ("GET", f"/api/v1/orders/{'9' * 500}", b"", h),
        ("POST", "/api/v1/auth/login", b"{" + b'"a":' * 5000 + b"1", json_ct),
    ]
    for method, path, body, headers in cases:
        resp = await client.request(method, path, content=body, headers=headers)
        assert 400 <= resp.status_code < 500, (method, path, resp.status_code, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json"), (
            path,
            resp.text,
        )


async def test_huge_bodies_are_refused(platform: RunningPlatform) -> None:
    # Declared size alone is enough to refuse: the gateway answers before reading the body.
    host, port = platform.gateway.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: shop\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n{"
    )
    await writer.drain()
    head = (await asyncio.wait_for(reader.read(4096), 10)).decode("latin-1")
    writer.close()
    await writer.wait_closed()
    assert head.startswith("HTTP/1.1 413"), head
    assert "application/problem+json" in head


async def test_openapi_document_covers_the_public_api(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    paths = set(doc["paths"])
    for expected in (
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/users/me",
        "/api/v1/products",
        "/api/v1/products/{product_id}",
        "/api/v1/categories",
        "/api/v1/cart",
        "/api/v1/orders",
        "/api/v1/notifications",
    ):
        assert any(p.startswith(expected.split("{")[0].rstrip("/")) for p in paths), expected
    assert not [p for p in paths if not p.startswith("/api/v1/")]
    assert len(SERVICES) == 6
