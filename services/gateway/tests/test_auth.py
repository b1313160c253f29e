"""Token checks at the edge: refused tokens never reach an upstream."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from shop_gateway.auth import EdgeAuth, KeysUnavailable
from shopkit.auth import TokenVerifier
from shopkit.errors import Unauthorized
from shopkit.testing import TokenFactory, serve_jwks

PROTECTED = [
    ("GET", "/api/v1/users/me"),
    ("GET", "/api/v1/cart"),
    ("PUT", "/api/v1/cart/items/p1"),
    ("POST", "/api/v1/orders"),
    ("GET", "/api/v1/orders/o1"),
    ("GET", "/api/v1/notifications"),
    ("POST", "/api/v1/products"),
    ("PATCH", "/api/v1/products/p1"),
    ("PUT", "/api/v1/products/p1/stock"),
]


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _bad_tokens(tokens: TokenFactory) -> dict[str, str]:
    good = tokens.token("victim")
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    tampered = _b64({**claims, "roles": ["admin"]})
    now = int(time.time())
    return {
        "forged": TokenFactory().token("victim"),
        "expired": tokens.token("victim", ttl=-3600),
        "wrong-audience": TokenFactory(audience="elsewhere").token("victim"),
        "wrong-issuer": TokenFactory(issuer="someone-else").token("victim"),
        "alg-none": f"{_b64({'alg': 'none', 'kid': tokens.kid})}.{payload}.",
        "alg-hs256": jwt.encode(
            {
                "sub": "victim",
                "iss": tokens.issuer,
                "aud": tokens.audience,
                "iat": now,
                "exp": now + 600,
            },
            "a-guessed-secret-that-is-long-enough-for-hs256",
            algorithm="HS256",
            headers={"kid": tokens.kid},
        ),
        "tampered-claims": f"{header}.{tampered}.{signature}",
        "garbage": "not-a-token",
    }


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_protected_routes_need_a_token(
    gateway: httpx.AsyncClient, upstreams: dict[str, Any], method: str, path: str
) -> None:
    response = await gateway.request(method, path, json={"a": 1})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401
    assert all(not upstream.calls for upstream in upstreams.values())


async def test_bad_tokens_are_refused_without_upstream_calls(
    gateway: httpx.AsyncClient, upstreams: dict[str, Any], tokens: TokenFactory
) -> None:
    for name, token in _bad_tokens(tokens).items():
        response = await gateway.get("/api/v1/cart", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"].startswith("Bearer"), name
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Token abc", tokens.token()):
        response = await gateway.get("/api/v1/cart", headers={"Authorization": header})
        assert response.status_code == 401, header
    assert upstreams["cart"].calls == []


async def test_valid_tokens_pass(
    gateway: httpx.AsyncClient, upstreams: dict[str, Any], tokens: TokenFactory
) -> None:
    for _ in range(3):  # the later ones come from the gateway's cache of verified tokens
        response = await gateway.get("/api/v1/cart", headers=tokens.headers("buyer"))
        assert response.status_code == 200
    admin = await gateway.post(
        "/api/v1/products", headers=tokens.headers("boss", roles=("admin",)), json={}
    )
    assert admin.status_code == 200
    assert len(upstreams["cart"].calls) == 3
    assert upstreams["product"].calls == ["POST /api/v1/products"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/products"),
        ("GET", "/api/v1/products/p1"),
        ("GET", "/api/v1/categories"),
    ],
)
async def test_public_routes_need_no_token(
    gateway: httpx.AsyncClient, upstreams: dict[str, Any], method: str, path: str
) -> None:
    response = await gateway.request(method, path, json={"email": "a@example.com"})
    assert response.status_code == 200
    assert response.json()["target"] == path


async def test_a_bad_token_on_a_public_route_is_left_to_the_service(
    gateway: httpx.AsyncClient, received: Any
) -> None:
    response = await gateway.get("/api/v1/products", headers={"Authorization": "Bearer junk"})
    assert response.status_code == 200
    assert received(response)["authorization"] == ["Bearer junk"]


async def test_keys_unavailable_is_503_not_401(
    gateway_factory: Any, upstreams: dict[str, Any], tokens: TokenFactory
) -> None:
    # A user service that publishes no keys: the gateway cannot judge any token.
    async with (
        serve_jwks(TokenFactory()) as other_keys,
        gateway_factory(user_url=other_keys + "/nothing-here") as client,
    ):
        response = await client.get("/api/v1/cart", headers=tokens.headers())
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert upstreams["cart"].calls == []


async def test_keys_that_failed_to_load_are_fetched_again_soon(tokens: TokenFactory) -> None:
    """The user service was still starting at the first fetch: tokens work as soon as a retry
    finds the keys, not a whole refetch interval later."""
    fetches = 0

    async def keys() -> dict[str, Any]:
        nonlocal fetches
        fetches += 1
        if fetches == 1:
            raise OSError("connection refused")
        return tokens.jwks

    verifier = TokenVerifier(
        keys,
        issuer=tokens.issuer,
        audience=tokens.audience,
        refetch_interval=30,
        retry_interval=0.2,
    )
    auth = EdgeAuth(verifier, cache_size=10, cache_seconds=30)
    bearer = f"Bearer {tokens.token('early')}".encode()
    with pytest.raises(KeysUnavailable):
        await auth.subject(bearer)
    # Within the retry interval the user service is not asked again.
    with pytest.raises(KeysUnavailable):
        await auth.subject(bearer)
    assert fetches == 1
    await asyncio.sleep(0.3)
    assert await auth.subject(bearer) == "early"
    assert fetches == 2


async def test_keys_from_a_jwks_server(gateway_factory: Any, upstreams: dict[str, Any]) -> None:
    """The user address may be any server publishing the keys (here the kit's JWKS server)."""
    minted = TokenFactory()
    async with serve_jwks(minted) as user_url, gateway_factory(user_url=user_url) as client:
        good = await client.get("/api/v1/orders", headers=minted.headers("u-9"))
        bad = await client.get("/api/v1/orders", headers=TokenFactory().headers("u-9"))
    assert good.status_code == 200
    assert bad.status_code == 401
    assert upstreams["order"].calls == ["GET /api/v1/orders"]


async def test_token_cache_is_bounded_and_never_outlives_the_token(
    tokens: TokenFactory,
) -> None:
    async def keys() -> dict[str, Any]:
        return tokens.jwks

    verifier = TokenVerifier(keys, issuer=tokens.issuer, audience=tokens.audience, leeway=0)
    auth = EdgeAuth(verifier, cache_size=10, cache_seconds=30)
    for i in range(50):
        assert await auth.subject(f"Bearer {tokens.token(f'u{i}')}".encode()) == f"u{i}"
        assert len(auth) <= 10

    # exp is whole seconds from a truncated now: ttl=3 leaves it at least 2 s to be used in.
    brief = f"Bearer {tokens.token('brief', ttl=3)}".encode()
    assert await auth.subject(brief) == "brief"
    assert await auth.subject(brief) == "brief"  # from the cache
    await asyncio.sleep(3.2)
    # Cached for up to 30 s, but never past the token's own expiry.
    with pytest.raises(Unauthorized):
        await auth.subject(brief)
