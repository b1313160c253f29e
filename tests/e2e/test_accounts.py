"""Accounts through the gateway: API.md's Accounts table, row by row."""

from __future__ import annotations

import uuid

import httpx
import jwt

from tests.e2e.support import ADMIN, assert_problem, login, new_customer


async def test_register_login_me(client: httpx.AsyncClient) -> None:
    email = f"Mixed.Case-{uuid.uuid4().hex[:8]}@Example.com"
    resp = await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": "s3cret-password", "name": "Mixed Case"},
    )
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["email"] == email.lower()
    assert set(created) >= {"id", "email", "name"}
    assert "password" not in resp.text

    resp = await client.post(
        "/api/v1/auth/login", json={"email": email.upper(), "password": "s3cret-password"}
    )
    assert resp.status_code == 200, resp.text
    token = resp.json()
    assert token["token_type"] == "bearer"
    assert token["expires_in"] > 0
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["id"] == created["id"]
    assert me.json()["roles"] == ["customer"]


async def test_duplicate_email_is_409_case_insensitively(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client)
    resp = await client.post(
        "/api/v1/auth/register",
        json={"email": customer.email.upper(), "password": "another-password", "name": "Dup"},
    )
    assert_problem(resp, 409)


async def test_register_rejects_bad_bodies(client: httpx.AsyncClient) -> None:
    good = {
        "email": f"x-{uuid.uuid4().hex[:8]}@example.com",
        "password": "long-enough",
        "name": "X",
    }
    bad_bodies = [
        {**good, "password": "short"},
        {**good, "password": "p" * 129},
        {**good, "name": ""},
        {**good, "name": "n" * 101},
        {**good, "email": "not-an-email"},
        {**good, "roles": ["admin"]},
        {k: v for k, v in good.items() if k != "email"},
    ]
    for body in bad_bodies:
        body_422 = assert_problem(await client.post("/api/v1/auth/register", json=body), 422)
        assert body_422["errors"], body
    resp = await client.post(
        "/api/v1/auth/register", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(resp, 422)


async def test_login_failures_look_the_same(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client)
    wrong_password = await client.post(
        "/api/v1/auth/login", json={"email": customer.email, "password": "wrong-password"}
    )
    unknown_email = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong-password"}
    )
    a = assert_problem(wrong_password, 401)
    b = assert_problem(unknown_email, 401)
    assert a == b
    assert wrong_password.headers["www-authenticate"].lower().startswith("bearer")


async def test_me_requires_a_valid_token(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client)
    token = customer.headers["Authorization"].split()[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    header = jwt.get_unverified_header(token)
    unsigned = jwt.encode({**claims, "roles": ["admin"]}, key="", algorithm="none")
    forged = jwt.encode(
        {**claims, "roles": ["admin"]}, "x" * 32, algorithm="HS256", headers={"kid": header["kid"]}
    )
    tampered = token.rsplit(".", 1)[0] + ".AAAA"
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not.a.token"},
        {"Authorization": f"Bearer {unsigned}"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": f"Bearer {tampered}"},
    ):
        resp = await client.get("/api/v1/users/me", headers=headers)
        assert_problem(resp, 401)
        assert resp.headers["www-authenticate"].lower().startswith("bearer")


async def test_admin_is_bootstrapped_from_the_environment(client: httpx.AsyncClient) -> None:
    token = await login(client, *ADMIN)
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert "admin" in me.json()["roles"]
