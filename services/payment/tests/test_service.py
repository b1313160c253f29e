"""The service around the routes: internal token, fault injection, health, migrations."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from pydantic import ValidationError
from shop_payment import repository
from shop_payment.errors import InvalidPaymentToken, ProviderUnavailable
from shop_payment.models import Base, Charge
from shop_payment.provider import PaymentProvider, SandboxProvider
from shop_payment.settings import PaymentSettings
from shopkit.db import utcnow
from shopkit.http import INTERNAL_TOKEN_HEADER
from shopkit.migrations import schema_drift
from shopkit.schemas import Money
from shopkit.testing import eventually

ROUTES = [
    ("POST", "/internal/charges"),
    ("GET", "/internal/charges?order_id=o"),
    ("POST", "/internal/refunds"),
    ("GET", "/internal/ledger"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_internal_token_is_required(api: Any, method: str, path: str) -> None:
    body = api.charge_body() if path == "/internal/charges" else None
    missing = await api.client.request(method, path, json=body, headers={INTERNAL_TOKEN_HEADER: ""})
    wrong = await api.client.request(
        method, path, json=body, headers={INTERNAL_TOKEN_HEADER: "not-the-token"}
    )

    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert await api.rows("charges") == 0


async def test_every_charge_fails_at_fault_rate_one_and_nothing_is_recorded(
    api_factory: Any,
) -> None:
    async with api_factory(fault_error_rate=1.0) as faulty:
        body = faulty.charge_body()
        resp = await faulty.client.post("/internal/charges", json=body)

        assert resp.status_code == 503
        assert resp.headers["retry-after"]
        assert resp.json()["type"].endswith("/payment-provider-unavailable")
        assert await faulty.rows("charges") == 0
        assert await faulty.rows("outbox") == 0
    # The same key goes through once the provider is healthy again: nothing was half-recorded.
    async with api_factory() as healthy:
        again = await healthy.client.post("/internal/charges", json=body)
        assert again.status_code == 201
        assert await healthy.rows("charges") == 1


async def test_fault_rate_zero_never_fails(api: Any) -> None:
    for _ in range(50):
        await api.charge()
    assert await api.rows("charges") == 50


async def test_fault_rate_fails_about_that_fraction_of_charges() -> None:
    provider: PaymentProvider = SandboxProvider(error_rate=0.3, rng=random.Random(7))
    failures = 0
    for n in range(2000):
        try:
            await provider.charge("tok_visa", Money(amount=1), idempotency_key=str(n))
        except ProviderUnavailable:
            failures += 1
    assert 500 <= failures <= 700


async def test_sandbox_provider_outcomes_and_refund() -> None:
    provider = SandboxProvider()
    ok = await provider.charge("tok_mastercard", Money(amount=5), idempotency_key="k")
    declined = await provider.charge(
        "tok_chargeDeclinedInsufficientFunds", Money(amount=5), idempotency_key="k2"
    )
    with pytest.raises(InvalidPaymentToken):
        await provider.charge("tok_unknown", Money(amount=5), idempotency_key="k3")

    assert (ok.status, ok.decline_code) == ("succeeded", None)
    assert (declined.status, declined.decline_code) == ("declined", "insufficient-funds")
    assert ok.provider_ref != declined.provider_ref
    assert (await provider.refund(ok.provider_ref, Money(amount=5))).startswith("re_")


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_fault_rate_outside_zero_to_one_is_refused(rate: float) -> None:
    with pytest.raises(ValidationError):
        PaymentSettings(fault_error_rate=rate)


def test_settings_defaults() -> None:
    settings = PaymentSettings()
    assert (settings.service_name, settings.port, settings.provider) == ("payment", 8105, "sandbox")
    assert settings.fault_error_rate == 0.0


async def test_migrations_match_the_models(api: Any) -> None:
    assert await schema_drift(api.app.state.db, Base.metadata) == []


async def test_ready_without_the_user_service(api: Any) -> None:
    async def ready() -> bool:
        return (await api.client.get("/readyz")).status_code == 200

    assert await eventually(ready)
    checks = (await api.client.get("/readyz")).json()["checks"]
    assert set(checks) == {"database", "broker"}


async def test_losing_the_unique_key_race_keeps_the_transaction_usable(api: Any) -> None:
    """The branch PostgreSQL takes when two first requests race (SQLite serializes them)."""
    body = api.charge_body()
    winner = (await api.client.post("/internal/charges", json=body)).json()
    async with api.app.state.db.session() as session:
        twin = Charge(
            id=str(uuid.uuid4()),
            idempotency_key=body["idempotency_key"],
            request_fingerprint="0" * 64,
            order_id="o",
            customer_id="c",
            amount=1,
            currency="USD",
            status="succeeded",
            decline_code=None,
            provider_ref="ref",
            created_at=utcnow(),
        )
        assert await repository.insert_charge(session, twin) is False
        # Still usable after the savepoint rolled back: the winner's row is there to replay.
        again = await repository.charge_by_key(session, body["idempotency_key"])
        assert again is not None
        assert again.id == winner["id"]
    assert await api.rows("charges") == 1
