"""Settings safety, the migrated schema, and the operational endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from shop_user.app import create_app
from shop_user.models import Base
from shop_user.settings import UserSettings
from shop_user.tokens import private_key_pem
from shopkit.migrations import schema_drift
from shopkit.testing import running_app

if TYPE_CHECKING:
    from conftest import Api

PEM = private_key_pem(Ed25519PrivateKey.generate()).decode()


def production(tmp_path: Path, **overrides: Any) -> UserSettings:
    values: dict[str, Any] = {
        "environment": "production",
        "data_dir": tmp_path,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'prod.sqlite3'}",
        "internal_token": "a-real-secret-internal-token",
        "signing_key": PEM,
        "argon2_time_cost": 1,
        "argon2_memory_cost_kib": 64,
        "log_json": False,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return UserSettings.model_validate(values)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"signing_key": None}, "signing_key"),
        ({"internal_token": "sweetslice-dev-internal-token"}, "internal_token"),
        ({"database_url": ""}, "database_url"),
    ],
)
def test_production_refuses_development_defaults(
    tmp_path: Path, overrides: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        production(tmp_path, **overrides)


def test_one_signing_key_source_only(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not both"):
        production(tmp_path, signing_key_path=tmp_path / "key.pem")


@pytest.mark.parametrize(
    "overrides",
    [
        {"admin_email": "not an email", "admin_password": "long enough"},
        {"admin_email": "chef@example.com", "admin_password": "short"},
        {"argon2_memory_cost_kib": 0},
        {"access_token_ttl_seconds": 0},
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        production(tmp_path, **overrides)


async def test_production_settings_with_a_key_serve(tmp_path: Path) -> None:
    settings = production(tmp_path)
    async with running_app(create_app(settings)) as client:
        resp = await client.post(
            "/api/v1/auth/register",
            json={"email": "prod@example.com", "password": "production pw", "name": "Prod"},
        )
        assert resp.status_code == 201, resp.text
        assert (await client.get("/docs")).status_code == 404
    # Production never writes a development key to disk.
    assert not settings.development_key_path.exists()


async def test_migrations_match_the_models(api: Api) -> None:
    assert await schema_drift(api.app.state.db, Base.metadata) == []


async def test_health_endpoints(api: Api) -> None:
    assert (await api.client.get("/livez")).status_code == 200
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "jwks": "ok"}
    assert (await api.client.get("/metrics")).status_code == 200


def test_settings_defaults() -> None:
    # The declared defaults, independent of whatever the environment running the tests holds.
    defaults = {name: field.default for name, field in UserSettings.model_fields.items()}
    assert defaults["port"] == 8101
    assert defaults["service_name"] == "user"
    assert defaults["argon2_time_cost"] == 2
    assert defaults["argon2_memory_cost_kib"] == 19456
    assert defaults["argon2_parallelism"] == 1
    assert defaults["access_token_ttl_seconds"] == 3600
    assert UserSettings.model_config.get("env_prefix") == "SWEETSLICE_USER_"


def test_development_key_lives_under_the_service_data_dir(tmp_path: Path) -> None:
    settings = UserSettings.model_validate({"data_dir": tmp_path})
    assert settings.development_key_path == tmp_path / "user" / "jwt-ed25519.pem"
