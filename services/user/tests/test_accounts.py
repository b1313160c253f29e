"""Registration, login and /users/me through the public routes."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from argon2 import PasswordHasher, Type
from argon2.exceptions import VerifyMismatchError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from shop_user.settings import UserSettings

if TYPE_CHECKING:
    from conftest import Api, ApiFactory


async def test_register_login_me(api: Api, settings: UserSettings) -> None:
    created = await api.register("Ada.Baker@Example.COM", name="  Ada Baker ")
    assert set(created) == {"id", "email", "name"}
    assert created["email"] == "ada.baker@example.com"
    assert created["name"] == "Ada Baker"

    resp = await api.client.post(
        "/api/v1/auth/login",
        json={"email": "ADA.BAKER@example.com", "password": api.password},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_ttl_seconds
    assert resp.headers["cache-control"] == "no-store"

    me = await api.me(body["access_token"])
    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": created["id"],
        "email": "ada.baker@example.com",
        "name": "Ada Baker",
        "roles": ["customer"],
    }


async def test_token_claims(
    api: Api, settings: UserSettings, signing_key: Ed25519PrivateKey
) -> None:
    created = await api.register()
    before = int(time.time())
    first = await api.login(created["email"])
    second = await api.login(created["email"])

    header = jwt.get_unverified_header(first)
    assert header["alg"] == "EdDSA"
    jwks = (await api.client.get("/.well-known/jwks.json")).json()
    assert header["kid"] == jwks["keys"][0]["kid"]

    claims: dict[str, Any] = jwt.decode(
        first,
        signing_key.public_key(),
        algorithms=["EdDSA"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    assert claims["sub"] == created["id"]
    assert claims["email"] == created["email"]
    assert claims["roles"] == ["customer"]
    assert claims["iss"] == settings.jwt_issuer
    assert claims["aud"] == settings.jwt_audience
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_seconds
    other = jwt.decode(second, options={"verify_signature": False})
    assert claims["jti"] != other["jti"]


async def test_duplicate_email_in_another_case_is_409(api: Api) -> None:
    email = api.unique_email("dup")
    await api.register(email)
    resp = await api.client.post(
        "/api/v1/auth/register",
        json={"email": email.upper(), "password": "another password", "name": "Copycat"},
    )
    body = api.problem(resp, 409)
    assert body["type"].endswith("/email-taken")
    stored = await api.users_with_email(email)
    assert len(stored) == 1
    assert stored[0].name == "Ada Baker"
    assert await api.user_count() == 1


async def test_concurrent_registrations_of_one_email_create_one_account(api: Api) -> None:
    email = api.unique_email("race")

    async def attempt(i: int) -> int:
        resp = await api.client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": f"password-{i}", "name": f"Racer {i}"},
        )
        return resp.status_code

    statuses = await asyncio.gather(*(attempt(i) for i in range(6)))
    assert sorted(statuses) == [201, 409, 409, 409, 409, 409]
    assert len(await api.users_with_email(email)) == 1


@pytest.mark.parametrize(
    ("body", "bad_field"),
    [
        ({"password": "long enough", "name": "No Email"}, "email"),
        ({"email": "nopass@example.com", "name": "No Password"}, "password"),
        ({"email": "noname@example.com", "password": "long enough"}, "name"),
        ({"email": "short@example.com", "password": "1234567", "name": "Shorty"}, "password"),
        ({"email": "long@example.com", "password": "x" * 129, "name": "Longy"}, "password"),
        ({"email": "huge@example.com", "password": "long enough", "name": "n" * 101}, "name"),
        ({"email": "huge@example.com", "password": "long enough", "name": "n" * 50_000}, "name"),
        ({"email": "blank@example.com", "password": "long enough", "name": "   "}, "name"),
        ({"email": "nul@example.com", "password": "long enough", "name": "a\x00b"}, "name"),
        ({"email": "nul\x00@example.com", "password": "long enough", "name": "Nul"}, "email"),
        ({"email": "not-an-email", "password": "long enough", "name": "Bad"}, "email"),
        ({"email": "a@" + "b" * 300 + ".com", "password": "long enough", "name": "Big"}, "email"),
        ({"email": ["x@example.com"], "password": "long enough", "name": "Typed"}, "email"),
        ({"email": "int@example.com", "password": 12345678, "name": "Typed"}, "password"),
        (
            {
                "email": "sneaky@example.com",
                "password": "long enough",
                "name": "Sneaky",
                "roles": ["admin"],
            },
            "roles",
        ),
    ],
)
async def test_bad_registration_bodies_are_422(
    api: Api, body: dict[str, Any], bad_field: str
) -> None:
    resp = await api.client.post("/api/v1/auth/register", json=body)
    problem = api.problem(resp, 422)
    assert any(bad_field in err["loc"] for err in problem["errors"]), problem
    assert await api.user_count() == 0


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"[]", b'"just a string"', b"null"],
)
async def test_non_json_register_body_is_422(api: Api, raw: bytes) -> None:
    resp = await api.client.post(
        "/api/v1/auth/register", content=raw, headers={"content-type": "application/json"}
    )
    api.problem(resp, 422)
    assert await api.user_count() == 0


async def test_body_that_is_not_utf8_is_a_client_error(api: Api) -> None:
    resp = await api.client.post(
        "/api/v1/auth/register",
        content=b"\xff\xfe\x00",
        headers={"content-type": "application/json"},
    )
    assert 400 <= resp.status_code < 500
    api.problem(resp, resp.status_code)
    assert await api.user_count() == 0


async def test_bad_login_bodies_are_422(api: Api) -> None:
    for body in (
        {"email": "x@example.com"},
        {"email": "x@example.com", "password": "p" * 129},
        {"email": "x@example.com", "password": "whatever", "remember": True},
    ):
        resp = await api.client.post("/api/v1/auth/login", json=body)
        api.problem(resp, 422)
    resp = await api.client.post(
        "/api/v1/auth/login", content=b"email=x", headers={"content-type": "application/json"}
    )
    api.problem(resp, 422)


async def test_password_is_kept_verbatim(api: Api) -> None:
    email = api.unique_email("spaces")
    await api.register(email, password="  padded secret  ")
    await api.login(email, "  padded secret  ")
    resp = await api.client.post(
        "/api/v1/auth/login", json={"email": email, "password": "padded secret"}
    )
    api.problem(resp, 401)


async def test_login_failures_look_the_same(api: Api) -> None:
    email = api.unique_email("known")
    await api.register(email)

    wrong = await api.client.post(
        "/api/v1/auth/login", json={"email": email, "password": "not the password"}
    )
    unknown = await api.client.post(
        "/api/v1/auth/login",
        json={"email": api.unique_email("ghost"), "password": "not the password"},
    )
    malformed = await api.client.post(
        "/api/v1/auth/login", json={"email": "no-at-sign", "password": "not the password"}
    )
    for resp in (wrong, unknown, malformed):
        body = api.problem(resp, 401)
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert body["type"].endswith("/invalid-credentials")
        assert "access_token" not in body
    assert wrong.json() == unknown.json() == malformed.json()
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]


async def test_unknown_email_still_pays_for_a_hash(api_factory: ApiFactory) -> None:
    # Heavier parameters so a skipped verification (well under a millisecond) cannot pass for
    # one: the failed login must cost about as much as checking a real hash.
    params = {"argon2_time_cost": 3, "argon2_memory_cost_kib": 32768}
    async with api_factory(**params) as api:
        hasher = PasswordHasher(time_cost=3, memory_cost=32768, parallelism=1, type=Type.ID)
        sample = hasher.hash("reference password")
        reference = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            with pytest.raises(VerifyMismatchError):
                hasher.verify(sample, "wrong password")
            reference = min(reference, time.perf_counter() - started)

        for _ in range(3):
            started = time.perf_counter()
            resp = await api.client.post(
                "/api/v1/auth/login",
                json={"email": api.unique_email("ghost"), "password": "wrong password"},
            )
            elapsed = time.perf_counter() - started
            api.problem(resp, 401)
            assert elapsed >= 0.5 * reference, (elapsed, reference)


async def test_stored_password_is_an_argon2id_hash(api: Api, settings: UserSettings) -> None:
    email = api.unique_email("hash")
    await api.register(email, password=api.password)
    [user] = await api.users_with_email(email)
    assert user.password_hash != api.password
    assert api.password not in user.password_hash
    assert user.password_hash.startswith("$argon2id$")
    assert f"m={settings.argon2_memory_cost_kib},t={settings.argon2_time_cost}," in (
        user.password_hash
    )
    assert PasswordHasher().verify(user.password_hash, api.password)


async def test_login_rehashes_when_parameters_change(api_factory: ApiFactory) -> None:
    email = "rehash@example.com"
    async with api_factory(argon2_time_cost=1, argon2_memory_cost_kib=64) as api:
        await api.register(email)
        [user] = await api.users_with_email(email)
        old_hash = user.password_hash
        assert "m=64,t=1," in old_hash

    async with api_factory(argon2_time_cost=2, argon2_memory_cost_kib=128) as api:
        # A failed login must not touch the stored hash.
        resp = await api.client.post(
            "/api/v1/auth/login", json={"email": email, "password": "wrong password"}
        )
        api.problem(resp, 401)
        [user] = await api.users_with_email(email)
        assert user.password_hash == old_hash

        await api.login(email)
        [user] = await api.users_with_email(email)
        assert "m=128,t=2," in user.password_hash
        assert user.password_hash != old_hash
        # And the new hash still logs in.
        await api.login(email)
