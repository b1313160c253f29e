"""Header hygiene: identity headers stripped, request ids, security headers, no shared cookies."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx

Received = Callable[[httpx.Response], dict[str, list[str]]]
HEX32 = re.compile(r"^[0-9a-f]{32}$")


async def test_client_identity_and_forwarding_headers_are_stripped(
    gateway: httpx.AsyncClient, tokens: Any, received: Received
) -> None:
    spoofed = {
        "X-User-Id": "admin-id",
        "X-User-Roles": "admin",
        "X-User-Email": "root@example.com",
        "X-User-Anything": "x",
        "X-Internal-Token": "sweetslice-dev-internal-token",
        "X-Forwarded-For": "10.0.0.1",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "Forwarded": "for=10.0.0.1",
        "X-Real-IP": "10.0.0.1",
        "Connection": "keep-alive, X-Drop-Me",
        "X-Drop-Me": "secret",
        "X-Kept": "yes",
    }
    auth = tokens.headers("u-1")
    response = await gateway.get("/api/v1/users/me", headers={**spoofed, **auth})
    assert response.status_code == 200
    seen = received(response)
    for name in spoofed:
        if name.lower() in {"x-forwarded-for", "x-kept"}:
            continue
        assert name.lower() not in seen, name
    # The gateway's own view of the client, once, not appended to the client's claim.
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-kept"] == ["yes"]
    assert seen["authorization"] == [auth["Authorization"]]


async def test_authorization_is_forwarded_unchanged(
    gateway: httpx.AsyncClient, tokens: Any, received: Received
) -> None:
    headers = tokens.headers("u-2")
    response = await gateway.get("/api/v1/orders", headers=headers)
    assert received(response)["authorization"] == [headers["Authorization"]]


async def test_request_id_from_the_client_is_kept(
    gateway: httpx.AsyncClient, received: Received
) -> None:
    response = await gateway.get("/api/v1/products", headers={"X-Request-ID": "client-id.42:a"})
    assert response.headers["x-request-id"] == "client-id.42:a"
    assert received(response)["x-request-id"] == ["client-id.42:a"]


async def test_missing_or_malformed_request_ids_are_replaced(
    gateway: httpx.AsyncClient, received: Received
) -> None:
    fresh = await gateway.get("/api/v1/products")
    assert HEX32.match(fresh.headers["x-request-id"])
    assert received(fresh)["x-request-id"] == [fresh.headers["x-request-id"]]

    for bad in ("has spaces", "x" * 129, "semi;colon", "<script>"):
        response = await gateway.get("/api/v1/products", headers={"X-Request-ID": bad})
        given = response.headers["x-request-id"]
        assert given != bad
        assert HEX32.match(given)
        assert received(response)["x-request-id"] == [given]

    ids = {(await gateway.get("/api/v1/products")).headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20


async def test_gateway_errors_carry_the_request_id(gateway: httpx.AsyncClient) -> None:
    not_found = await gateway.get("/nope", headers={"X-Request-ID": "trace-1"})
    assert not_found.headers["x-request-id"] == "trace-1"
    unauthorized = await gateway.get("/api/v1/cart", headers={"X-Request-ID": "trace-2"})
    assert unauthorized.status_code == 401
    assert unauthorized.headers["x-request-id"] == "trace-2"


async def test_security_headers_on_proxied_and_own_answers(gateway: httpx.AsyncClient) -> None:
    for path in ("/api/v1/products", "/livez", "/nope", "/api/v1/cart"):
        response = await gateway.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "no-referrer", path
        assert response.headers["x-frame-options"] == "DENY", path
    proxied = await gateway.get("/api/v1/products")
    assert proxied.headers["cache-control"] == "no-store"


async def test_upstream_cache_control_is_kept(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/products/cached")
    assert response.headers.get_list("cache-control") == ["public, max-age=60"]


async def test_no_duplicate_hop_or_id_headers_from_upstream(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/products", headers={"X-Request-ID": "one-id"})
    assert response.headers.get_list("x-request-id") == ["one-id"]
    assert len(response.headers.get_list("date")) <= 1


async def test_upstream_cookies_never_reach_other_requests(
    gateway: httpx.AsyncClient, received: Received
) -> None:
    first = await gateway.get("/api/v1/products/set-cookie")
    assert "session=upstream-secret" in first.headers["set-cookie"]
    # A fresh client, so only a cookie kept by the gateway could show up.
    async with httpx.AsyncClient(base_url=str(gateway.base_url)) as other:
        second = await other.get("/api/v1/products")
    assert "cookie" not in received(second)


async def test_cors_is_off_by_default(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/products", headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = await gateway.options(
        "/api/v1/cart",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "PUT"},
    )
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_for_configured_origins(gateway_factory: Any, upstreams: Any) -> None:
    async with gateway_factory(
        cors_allowed_origins="https://shop.example, https://admin.example",
        cors_allow_credentials=True,
    ) as client:
        allowed = await client.get("/api/v1/products", headers={"Origin": "https://shop.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        assert allowed.headers["access-control-allow-credentials"] == "true"
        assert "origin" in allowed.headers["vary"].lower()

        other = await client.get("/api/v1/products", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers

        preflight = await client.options(
            "/api/v1/cart/items/p1",
            headers={
                "Origin": "https://admin.example",
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "https://admin.example"
        assert "PUT" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"]
        # The preflight is answered by the gateway, without a token and without the upstream.
        assert upstreams["cart"].calls == []
