"""Fixtures: the user app in-process on a real SQLite file, with a real signing key."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from shop_user.app import create_app
from shop_user.models import User
from shop_user.settings import UserSettings
from shop_user.tokens import private_key_pem
from shopkit.http import INTERNAL_TOKEN_HEADER
from shopkit.testing import running_app
from sqlalchemy import func, select

INTERNAL_TOKEN = "user-tests-internal-token"
PASSWORD = "correct horse battery"

# Cheap argon2 parameters: the tests exercise behaviour, not the cost.
FAST_ARGON2: dict[str, Any] = {
    "argon2_time_cost": 1,
    "argon2_memory_cost_kib": 64,
    "argon2_parallelism": 1,
}

SettingsFactory = Callable[..., UserSettings]


def make_settings(tmp_path: Path, **overrides: Any) -> UserSettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'user.sqlite3'}",
        # Nothing listens here: the user service verifies its own tokens without HTTP.
        "user_url": "http://127.0.0.1:9",
        "internal_token": INTERNAL_TOKEN,
        "log_json": False,
        "log_level": "WARNING",
        **FAST_ARGON2,
    }
    values.update(overrides)
    return UserSettings.model_validate(values)


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def settings_factory(tmp_path: Path, signing_key: Ed25519PrivateKey) -> SettingsFactory:
    def factory(**overrides: Any) -> UserSettings:
        overrides.setdefault("signing_key", private_key_pem(signing_key).decode())
        return make_settings(tmp_path, **overrides)

    return factory


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> UserSettings:
    return settings_factory()


class Api:
    """A running app, its in-process client, and direct reads of its database."""

    password = PASSWORD
    internal_token = INTERNAL_TOKEN

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    @staticmethod
    def unique_email(prefix: str = "baker") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @staticmethod
    def internal(token: str = INTERNAL_TOKEN) -> dict[str, str]:
        return {INTERNAL_TOKEN_HEADER: token}

    @staticmethod
    def problem(resp: httpx.Response, status: int) -> dict[str, Any]:
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        body: dict[str, Any] = resp.json()
        assert body["status"] == status
        return body

    async def register(
        self, email: str | None = None, password: str = PASSWORD, name: str = "Ada Baker"
    ) -> dict[str, Any]:
        resp = await self.client.post(
            "/api/v1/auth/register",
            json={"email": email or self.unique_email(), "password": password, "name": name},
        )
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def login(self, email: str, password: str = PASSWORD) -> str:
        resp = await self.client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert resp.status_code == 200, resp.text
        token: str = resp.json()["access_token"]
        return token

    async def me(self, token: str) -> httpx.Response:
        return await self.client.get("/api/v1/users/me", headers=self.bearer(token))

    async def users_with_email(self, email: str) -> list[User]:
        async with self.app.state.db.session() as session:
            result = await session.execute(select(User).where(User.email == email))
            return list(result.scalars())

    async def user_count(self) -> int:
        async with self.app.state.db.session() as session:
            total = await session.scalar(select(func.count()).select_from(User))
            return int(total or 0)


@pytest.fixture
def app(settings: UserSettings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[Api]:
    async with running_app(app) as client:
        yield Api(app, client)


ApiFactory = Callable[..., contextlib.AbstractAsyncContextManager[Api]]


@pytest.fixture
def api_factory(settings_factory: SettingsFactory) -> ApiFactory:
    """Another start of the service on the same data directory and database file."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Api]:
        app = create_app(settings_factory(**overrides))
        async with running_app(app) as client:
            yield Api(app, client)

    return start
