from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import APIRouter
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict
from shopkit.app import create_service_app
from shopkit.errors import Conflict, ServiceUnavailable, Unprocessable
from shopkit.schemas import (
    Money,
    StrictModel,
    decode_cursor,
    decode_time_cursor,
    encode_cursor,
    encode_time_cursor,
)
from shopkit.settings import ServiceSettings
from shopkit.testing import running_app


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SWEETSLICE_DEMO_", frozen=True, extra="ignore")
    service_name: str = "demo"


def test_development_defaults_are_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="internal_token"):
        DemoSettings(environment="production", database_url="postgresql://db/x")
    with pytest.raises(ValidationError, match="database_url"):
        DemoSettings(environment="production", internal_token=SecretStr("a-real-secret"))
    ok = DemoSettings(
        environment="production",
        internal_token=SecretStr("a-real-secret"),
        database_url="postgresql://db/x",
    )
    assert ok.effective_database_url == "postgresql://db/x"


def test_settings_read_their_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEETSLICE_DEMO_PORT", "9999")
    monkeypatch.setenv("SWEETSLICE_OTHER_PORT", "1111")
    assert DemoSettings().port == 9999


def test_default_database_is_a_sqlite_file_per_service(tmp_path: object) -> None:
    settings = DemoSettings(data_dir=tmp_path)  # type: ignore[arg-type]
    assert settings.effective_database_url.endswith("/demo/db.sqlite3")
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")


def test_cursor_round_trip_and_garbage() -> None:
    cursor = encode_cursor({"n": "Baguette", "i": "42"})
    assert decode_cursor(cursor, {"n", "i"}) == {"n": "Baguette", "i": "42"}
    for bad in ("!!", "e30", encode_cursor({"n": "x"}), "a" * 3, encode_cursor([1])):  # type: ignore[arg-type]
        with pytest.raises(Unprocessable):
            decode_cursor(bad, {"n", "i"})


def test_money_is_integer_minor_units() -> None:
    assert Money(amount=250).model_dump() == {"amount": 250, "currency": "USD"}
    for bad in (
        {"amount": -1},
        {"amount": 1.5},
        {"amount": 1, "currency": "EUR"},
        {"amount": "1"},
        {"amount": 2.0},
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError is a ValueError
            Money.model_validate_json(__import__("json").dumps(bad))


class Body(StrictModel):
    name: str


router = APIRouter()


@router.post("/things")
async def make(body: Body) -> dict[str, str]:
    if body.name == "taken":
        raise Conflict("that name is taken", extra={"name": body.name})
    if body.name == "down":
        raise ServiceUnavailable("try later", retry_after=7)
    if body.name == "boom":
        raise RuntimeError("secret internals")
    return {"name": body.name}


async def test_problem_details_for_every_error(tmp_path: object) -> None:
    app = create_service_app(
        DemoSettings(data_dir=tmp_path, user_url="http://127.0.0.1:9"),  # type: ignore[arg-type]
        title="demo",
        description="demo",
        routers=[router],
        migrations=None,
    )
    async with running_app(app) as client:
        ok = await client.post("/things", json={"name": "x"})
        assert ok.status_code == 200
        assert ok.headers["x-request-id"]

        conflict = await client.post("/things", json={"name": "taken"})
        assert conflict.status_code == 409
        assert conflict.headers["content-type"] == "application/problem+json"
        assert conflict.json() == {
            "type": "https://sweetslice.dev/problems/conflict",
            "title": "Conflict",
            "status": 409,
            "detail": "that name is taken",
            "name": "taken",
        }
        down = await client.post("/things", json={"name": "down"})
        assert down.status_code == 503
        assert down.headers["retry-after"] == "7"

        invalid = await client.post("/things", json={"name": "x", "admin": True})
        assert invalid.status_code == 422
        assert invalid.json()["errors"][0]["loc"] == ["body", "admin"]
        not_json = await client.post(
            "/things", content=b"{", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422

        missing = await client.get("/nowhere", headers={"X-Request-ID": "abc-123"})
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.headers["x-request-id"] == "abc-123"
        wrong_method = await client.delete("/things")
        assert wrong_method.status_code == 405

        boom = await client.post("/things", json={"name": "boom"})
        assert boom.status_code == 500
        assert "secret internals" not in boom.text
        assert boom.json()["type"].endswith("internal-error")

        huge = await client.post("/things", json={"name": "x" * (2 * 1024 * 1024)})
        assert huge.status_code == 413
        assert huge.headers["content-type"] == "application/problem+json"

        nul_path = await client.get("/things/%00")
        assert nul_path.status_code == 404
        assert nul_path.headers["content-type"] == "application/problem+json"
        nul_query = await client.get("/livez", params={"q": "a\x00b"})
        assert nul_query.status_code == 422
        nul_body = await client.post("/things", json={"name": "a\x00b"})
        assert nul_body.status_code == 422

        live = await client.get("/livez")
        assert live.json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 503  # no JWKS reachable at port 9
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["jwks"].startswith("failing")
        metrics = await client.get("/metrics")
        assert 'route="/things"' in metrics.text
        assert "/nowhere" not in metrics.text


def test_time_cursors() -> None:
    moment = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    assert decode_time_cursor(encode_time_cursor(moment, "abc")) == (moment, "abc")
    crafted = [
        encode_cursor({"created_at": "0001-01-01T00:00:00+05:00", "id": "x"}),  # overflows
        encode_cursor({"created_at": "2026-11-25T14:00:00", "id": "x"}),  # no time zone
        encode_cursor({"created_at": "yesterday", "id": "x"}),
        encode_cursor({"created_at": 5, "id": "x"}),
    ]
    for cursor in crafted:
        with pytest.raises(Unprocessable):
            decode_time_cursor(cursor)
