"""Which upstream gets which path, and what the gateway refuses to forward at all."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from shop_gateway.routing import has_dot_segment, is_public, upstream_for


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/auth/login", "user"),
        ("/api/v1/auth/register", "user"),
        ("/api/v1/users/me", "user"),
        ("/api/v1/products", "product"),
        ("/api/v1/products/abc/stock", "product"),
        ("/api/v1/categories", "product"),
        ("/api/v1/cart", "cart"),
        ("/api/v1/cart/items/p1", "cart"),
        ("/api/v1/orders", "order"),
        ("/api/v1/orders/o1/cancel", "order"),
        ("/api/v1/notifications", "notification"),
        ("/api/v1/auth", None),
        ("/api/v1/users", None),
        ("/api/v1/productsX", None),
        ("/api/v1/payments", None),
        ("/api/v2/products", None),
        ("/internal/users/1", None),
        ("/.well-known/jwks.json", None),
        ("/openapi.json", None),
        ("/api/v1/", None),
    ],
)
def test_upstream_for(path: str, service: str | None) -> None:
    assert upstream_for(path) == service


@pytest.mark.parametrize(
    ("method", "path", "public"),
    [
        ("POST", "/api/v1/auth/register", True),
        ("POST", "/api/v1/auth/login", True),
        ("GET", "/api/v1/auth/login", False),
        ("GET", "/api/v1/products", True),
        ("GET", "/api/v1/products/p1", True),
        ("HEAD", "/api/v1/products/p1", True),
        ("GET", "/api/v1/categories", True),
        ("POST", "/api/v1/products", False),
        ("PATCH", "/api/v1/products/p1", False),
        ("PUT", "/api/v1/products/p1/stock", False),
        ("GET", "/api/v1/users/me", False),
        ("GET", "/api/v1/cart", False),
        ("GET", "/api/v1/orders", False),
        ("GET", "/api/v1/notifications", False),
    ],
)
def test_is_public(method: str, path: str, public: bool) -> None:
    assert is_public(method, path) is public


def test_dot_segments() -> None:
    assert has_dot_segment("/api/v1/products/../../internal/x")
    assert has_dot_segment("/api/v1/products/./x")
    assert has_dot_segment("/api/v1/products/..")
    assert not has_dot_segment("/api/v1/products/.hidden")
    assert not has_dot_segment("/api/v1/products/a..b")


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/users/me", "user"),
        ("/api/v1/products/p1", "product"),
        ("/api/v1/categories", "product"),
        ("/api/v1/cart", "cart"),
        ("/api/v1/orders/o1", "order"),
        ("/api/v1/notifications", "notification"),
    ],
)
async def test_each_prefix_reaches_its_service(
    gateway: httpx.AsyncClient,
    upstreams: dict[str, Any],
    tokens: Any,
    path: str,
    service: str,
) -> None:
    response = await gateway.get(path, headers=tokens.headers())
    assert response.status_code == 200
    assert response.json()["service"] == service
    assert response.json()["target"] == path
    assert upstreams[service].calls == [f"GET {path}"]


@pytest.mark.parametrize(
    "path",
    [
        "/internal/users/1",
        "/internal/reservations",
        "/.well-known/jwks.json",
        "/openapi.json",
        "/api/v1/payments",
        "/api/v1/unknown",
        "/api/v1/users",
        "/api/v2/products",
        "/",
    ],
)
async def test_unrouted_paths_are_404_problems_without_upstream_calls(
    gateway: httpx.AsyncClient, upstreams: dict[str, Any], tokens: Any, path: str
) -> None:
    response = await gateway.get(path, headers=tokens.headers())
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404
    assert response.headers["x-request-id"]
    assert all(not upstream.calls for upstream in upstreams.values())


@pytest.mark.parametrize(
    "target",
    [
        b"/api/v1/products/../../../internal/stock-audit",
        b"/api/v1/products/%2e%2e/%2E%2E/%2e%2e/internal/stock-audit",
        b"/api/v1/products/./p1",
    ],
)
async def test_dot_segments_cannot_escape_the_routed_prefix(
    gateway: httpx.AsyncClient, upstreams: dict[str, Any], raw: Any, target: bytes
) -> None:
    status, head = await raw(
        gateway, b"GET " + target + b" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    assert status == 404
    assert b"x-request-id" in head.lower()
    assert upstreams["product"].calls == []


async def test_methods_are_forwarded(
    gateway: httpx.AsyncClient, upstreams: dict[str, Any], tokens: Any
) -> None:
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        response = await gateway.request(
            method, "/api/v1/cart/items/p1", headers=tokens.headers(), json={"quantity": 2}
        )
        assert response.status_code == 200
        assert response.json()["method"] == method
    assert len(upstreams["cart"].calls) == 4


async def test_docs_page_points_at_the_merged_document(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/api/v1/openapi.json" in response.text


async def test_own_routes_refuse_other_methods(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/livez")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
