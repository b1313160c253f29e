"""The clock-offset fault switch (RELIABILITY.md R17) and the token checks' tolerance of skew:
a token minted by a service whose clock is 5 minutes off either way still verifies, one beyond
the leeway does not."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict
from shopkit import clock
from shopkit.auth import TokenVerifier
from shopkit.db import utcnow
from shopkit.errors import Unauthorized
from shopkit.settings import ServiceSettings
from shopkit.testing import TokenFactory

SKEW = 300  # RELIABILITY.md R17: a service's clock 5 minutes off


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SWEETSLICE_DEMO_", frozen=True, extra="ignore")
    service_name: str = "demo"


@pytest.fixture(autouse=True)
def true_clock() -> Iterator[None]:
    """Whatever a test does to this process's clock is undone."""
    yield
    clock.set_offset(0)


def test_the_offset_shifts_every_wall_clock_reading() -> None:
    assert clock.offset() == 0
    with clock.shifted(SKEW):
        assert clock.now() - time.time() == pytest.approx(SKEW, abs=1)
        assert (utcnow() - datetime.now(UTC)).total_seconds() == pytest.approx(SKEW, abs=1)
        assert utcnow().tzinfo is not None
    assert abs(clock.now() - time.time()) < 1
    with clock.shifted(-SKEW):
        assert datetime.now(UTC) - utcnow() >= timedelta(seconds=SKEW - 1)


def test_the_setting_is_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEETSLICE_DEMO_FAULT_CLOCK_OFFSET_SECONDS", "-300")
    assert DemoSettings().fault_clock_offset_seconds == -SKEW
    assert clock.offset() == -SKEW
    monkeypatch.delenv("SWEETSLICE_DEMO_FAULT_CLOCK_OFFSET_SECONDS")
    assert DemoSettings().fault_clock_offset_seconds == 0
    assert clock.offset() == 0


def test_production_refuses_the_switch() -> None:
    with pytest.raises(ValidationError, match="fault_clock_offset_seconds"):
        DemoSettings(
            environment="production",
            internal_token=SecretStr("a-real-secret"),
            database_url="postgresql://db/x",
            fault_clock_offset_seconds=SKEW,
        )
    assert clock.offset() == 0


def _token(tokens: TokenFactory, *, issued: float, ttl: int = 600, **claims: Any) -> str:
    """A token minted by an issuer whose clock read ``issued``."""
    return tokens.token("u-1", iat=int(issued), exp=int(issued) + ttl, **claims)


async def test_tokens_from_a_skewed_issuer_verify_within_the_leeway() -> None:
    tokens = TokenFactory()

    async def keys() -> dict[str, Any]:
        return tokens.jwks

    leeway = DemoSettings().jwt_leeway_seconds
    assert leeway > SKEW, "the default leeway must cover RELIABILITY.md's 5 minutes"
    verifier = TokenVerifier(keys, issuer=tokens.issuer, audience=tokens.audience, leeway=leeway)
    now = time.time()

    # The issuer 5 minutes ahead (iat in our future) or behind (exp nearer than it meant).
    ahead = await verifier.verify(_token(tokens, issued=now + SKEW))
    behind = await verifier.verify(_token(tokens, issued=now - SKEW, ttl=SKEW + 30))
    assert ahead.user_id == behind.user_id == "u-1"
    # The verifier's own clock off instead: the same thing seen from the other side.
    with clock.shifted(-SKEW):
        assert (await verifier.verify(_token(tokens, issued=now))).user_id == "u-1"
    with clock.shifted(SKEW):
        assert (await verifier.verify(_token(tokens, issued=now, ttl=60))).user_id == "u-1"

    refused = {
        "issued beyond the leeway ahead": _token(tokens, issued=now + leeway + 60),
        "expired beyond the leeway": _token(tokens, issued=now - 3600, ttl=3600 - leeway - 60),
        "not before, beyond the leeway": _token(tokens, issued=now, nbf=int(now) + leeway + 60),
    }
    for name, token in refused.items():
        try:
            await verifier.verify(token)
        except Unauthorized:
            continue
        pytest.fail(f"accepted a token {name}")
    # Shifting the verifier's clock moves the same boundary.
    with clock.shifted(leeway + 60), pytest.raises(Unauthorized):
        await verifier.verify(_token(tokens, issued=now, ttl=60))


async def test_time_claims_must_be_finite_numbers() -> None:
    tokens = TokenFactory()

    async def keys() -> dict[str, Any]:
        return tokens.jwks

    verifier = TokenVerifier(keys, issuer=tokens.issuer, audience=tokens.audience)
    now = int(time.time())
    for claims in (
        {"exp": True},
        {"exp": "9999999999"},
        {"exp": 10**400},  # would overflow a float; an int compares as it is
        {"iat": -(10**400)},
        {"nbf": "later"},
        {"exp": None},
    ):
        payload = {"sub": "u", "iss": tokens.issuer, "aud": tokens.audience, "iat": now}
        payload.update(exp=now + 60)
        payload.update(claims)
        token = jwt.encode(payload, tokens.key, algorithm="EdDSA", headers={"kid": tokens.kid})
        if claims.get("exp") == 10**400 or claims.get("iat") == -(10**400):
            # Valid JSON numbers: a far future expiry or an old iat is a time, not garbage.
            assert (await verifier.verify(token)).user_id == "u"
            continue
        with pytest.raises(Unauthorized):
            await verifier.verify(token)
    # NaN and Infinity are not JSON, but Python's parser takes them: written by hand here.
    for literal in ("NaN", "Infinity"):
        body = (
            f'{{"sub":"u","iss":"{tokens.issuer}","aud":"{tokens.audience}",'
            f'"iat":{now},"exp":{literal}}}'
        )
        token = jwt.api_jws.encode(
            body.encode(), tokens.key, algorithm="EdDSA", headers={"kid": tokens.kid}
        )
        with pytest.raises(Unauthorized):
            await verifier.verify(token)
