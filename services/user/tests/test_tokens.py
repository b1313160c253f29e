"""Access tokens: who /users/me accepts, the published JWKS, and the signing key's life."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import stat
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from fastapi import FastAPI
from shop_user.app import create_app
from shop_user.settings import UserSettings
from shop_user.tokens import SigningKeyError, development_key, private_key_pem
from shopkit.auth import TokenVerifier
from shopkit.errors import Unauthorized
from shopkit.testing import TokenFactory, free_port, running_app

if TYPE_CHECKING:
    from conftest import Api, ApiFactory, SettingsFactory


def sign(key: Ed25519PrivateKey, kid: str, settings: UserSettings, **overrides: Any) -> str:
    """A token like the service's, with any claim changed."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "email": "someone@example.com",
        "roles": ["customer"],
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def service_kid(api: Api) -> str:
    kid: str = (await api.client.get("/.well-known/jwks.json")).json()["keys"][0]["kid"]
    return kid


async def test_jwks_publishes_the_signing_key(api: Api, signing_key: Ed25519PrivateKey) -> None:
    resp = await api.client.get("/.well-known/jwks.json")
    assert resp.status_code == 200
    [jwk] = resp.json()["keys"]
    raw = signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert jwk == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(raw),
        "kid": hashlib.sha256(raw).hexdigest()[:16],
        "alg": "EdDSA",
        "use": "sig",
    }
    assert "d" not in jwk


async def test_me_accepts_a_valid_token_signed_with_the_service_key(
    api: Api, settings: UserSettings, signing_key: Ed25519PrivateKey
) -> None:
    created = await api.register()
    token = sign(
        signing_key, await service_kid(api), settings, sub=created["id"], roles=["customer"]
    )
    resp = await api.me(token)
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == created["id"]


async def test_me_rejects_bad_tokens(
    api: Api, settings: UserSettings, signing_key: Ed25519PrivateKey
) -> None:
    created = await api.register()
    kid = await service_kid(api)
    other_key = Ed25519PrivateKey.generate()
    foreign = TokenFactory(issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    now = int(time.time())
    unsigned_claims = {
        "sub": created["id"],
        "email": created["email"],
        "roles": ["admin"],
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + 600,
    }
    alg_none = (
        b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
        + "."
        + b64url(json.dumps(unsigned_claims).encode())
        + "."
    )
    valid = sign(signing_key, kid, settings, sub=created["id"])
    header, payload, signature = valid.split(".")
    tampered_claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_claims["roles"] = ["admin"]
    tampered = f"{header}.{b64url(json.dumps(tampered_claims).encode())}.{signature}"

    cases: dict[str, dict[str, str]] = {
        "missing": {},
        "not bearer": {"Authorization": f"Basic {valid}"},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage": api.bearer("not.a.token"),
        "random text": api.bearer("x" * 5000),
        "foreign key and kid": api.bearer(foreign.token(created["id"])),
        "foreign key, our kid": api.bearer(sign(other_key, kid, settings, sub=created["id"])),
        "alg none": api.bearer(alg_none),
        "tampered payload": api.bearer(tampered),
        "expired": api.bearer(
            sign(signing_key, kid, settings, sub=created["id"], iat=now - 7200, exp=now - 3600)
        ),
        "wrong audience": api.bearer(
            sign(signing_key, kid, settings, sub=created["id"], aud="someone-else")
        ),
        "wrong issuer": api.bearer(
            sign(signing_key, kid, settings, sub=created["id"], iss="evil-issuer")
        ),
        "no subject": api.bearer(
            jwt.encode(
                {k: v for k, v in unsigned_claims.items() if k != "sub"},
                signing_key,
                algorithm="EdDSA",
                headers={"kid": kid},
            )
        ),
    }
    for name, headers in cases.items():
        resp = await api.client.get("/api/v1/users/me", headers=headers)
        assert resp.status_code == 401, (name, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json"), name
        assert resp.headers["www-authenticate"].startswith("Bearer"), name


async def test_token_of_a_deleted_account_is_401(
    api: Api, settings: UserSettings, signing_key: Ed25519PrivateKey
) -> None:
    token = sign(signing_key, await service_kid(api), settings, sub=str(uuid.uuid4()))
    resp = await api.me(token)
    api.problem(resp, 401)
    assert resp.headers["www-authenticate"].startswith("Bearer")


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app under a real uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert not task.done(), "uvicorn stopped during start"
            assert time.monotonic() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


async def test_peer_verifies_tokens_from_the_jwks_over_http(settings: UserSettings) -> None:
    async with served(create_app(settings)) as base, aiohttp.ClientSession() as http:
        email = "peer-check@example.com"
        resp = await http.post(
            f"{base}/api/v1/auth/register",
            json={"email": email, "password": "correct horse battery", "name": "Peer"},
        )
        assert resp.status == 201, await resp.text()
        user_id = (await resp.json())["id"]
        resp = await http.post(
            f"{base}/api/v1/auth/login",
            json={"email": email, "password": "correct horse battery"},
        )
        assert resp.status == 200, await resp.text()
        token = (await resp.json())["access_token"]

        fetches = 0

        async def fetch_jwks() -> dict[str, Any]:
            nonlocal fetches
            fetches += 1
            async with http.get(f"{base}/.well-known/jwks.json") as jwks_resp:
                assert jwks_resp.status == 200
                body: dict[str, Any] = await jwks_resp.json()
                return body

        # Verified the way every other service does it: a separate verifier, real HTTP.
        verifier = TokenVerifier(
            fetch_jwks, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        principal = await verifier.verify(token)
        assert principal.user_id == user_id
        assert principal.email == email
        assert principal.roles == ("customer",)
        assert fetches == 1

        strange = TokenFactory(issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        with pytest.raises(Unauthorized):
            await verifier.verify(strange.token(user_id))


async def test_development_key_persists_across_restarts(
    api_factory: ApiFactory, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(signing_key=None)
    key_file = settings.development_key_path
    assert not key_file.exists()

    async with api_factory(signing_key=None) as api:
        created = await api.register()
        token = await api.login(created["email"])
        first_kid = await service_kid(api)
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")

    async with api_factory(signing_key=None) as api:
        assert await service_kid(api) == first_kid
        resp = await api.me(token)
        assert resp.status_code == 200, resp.text
        assert resp.json()["id"] == created["id"]


async def test_two_development_instances_agree_on_one_key(
    settings_factory: SettingsFactory,
) -> None:
    apps = [create_app(settings_factory(signing_key=None)) for _ in range(2)]
    async with running_app(apps[0]) as first, running_app(apps[1]) as second:
        kids = {
            (await client.get("/.well-known/jwks.json")).json()["keys"][0]["kid"]
            for client in (first, second)
        }
    assert len(kids) == 1


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "user" / "jwt-ed25519.pem"
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(lambda _: development_key(path), range(16)))
    public = {k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) for k in keys}
    assert len(public) == 1
    # No temporary files are left behind by the instances that lost the race.
    assert [p.name for p in path.parent.iterdir()] == ["jwt-ed25519.pem"]


async def test_signing_key_from_a_file(
    settings_factory: SettingsFactory, tmp_path: Path, signing_key: Ed25519PrivateKey
) -> None:
    path = tmp_path / "mounted-secret.pem"
    path.write_bytes(private_key_pem(signing_key))
    settings = settings_factory(signing_key=None, signing_key_path=path)
    async with running_app(create_app(settings)) as client:
        jwk = (await client.get("/.well-known/jwks.json")).json()["keys"][0]
    raw = signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert jwk["x"] == b64url(raw)
    assert not settings.development_key_path.exists()


@pytest.mark.parametrize("problem", ["not ed25519", "not pem", "missing file"])
async def test_unusable_signing_key_stops_the_start(
    settings_factory: SettingsFactory, tmp_path: Path, problem: str
) -> None:
    overrides: dict[str, Any] = {"signing_key": None}
    if problem == "not ed25519":
        pem = X25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        overrides["signing_key"] = pem.decode()
    elif problem == "not pem":
        overrides["signing_key"] = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"
    else:
        overrides["signing_key_path"] = tmp_path / "absent.pem"
    app = create_app(settings_factory(**overrides))
    with pytest.raises(SigningKeyError):
        async with running_app(app):
            pass
