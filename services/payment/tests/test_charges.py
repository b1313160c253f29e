"""Charges over the internal API: token outcomes, idempotency, validation, listing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

PROBLEM = "https://sweetslice.dev/problems/"


@pytest.mark.parametrize(
    ("token", "status", "decline_code"),
    [
        ("tok_visa", "succeeded", None),
        ("tok_mastercard", "succeeded", None),
        ("tok_chargeDeclined", "declined", "card-declined"),
        ("tok_chargeDeclinedInsufficientFunds", "declined", "insufficient-funds"),
    ],
)
async def test_sandbox_tokens(api: Any, token: str, status: str, decline_code: str | None) -> None:
    body = api.charge_body(token=token, amount=1234)
    resp = await api.client.post("/internal/charges", json=body)

    assert resp.status_code == 201, resp.text
    charge = resp.json()
    assert charge["status"] == status
    assert charge["decline_code"] == decline_code
    assert charge["amount"] == {"amount": 1234, "currency": "USD"}
    assert charge["refunded"] == {"amount": 0, "currency": "USD"}
    assert charge["order_id"] == body["order_id"]
    assert charge["customer_id"] == body["customer_id"]
    assert await api.rows("charges") == 1
    # Only declines are announced; a success is reported by the order saga itself.
    assert await api.rows("outbox") == (1 if status == "declined" else 0)


async def test_unknown_token_is_422_and_records_nothing(api: Any) -> None:
    resp = await api.client.post("/internal/charges", json=api.charge_body(token="tok_forged"))

    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["type"] == PROBLEM + "invalid-payment-token"
    assert await api.rows("charges") == 0


async def test_replay_with_same_body_returns_the_stored_charge(api: Any) -> None:
    body = api.charge_body(token="tok_chargeDeclined")
    first = await api.client.post("/internal/charges", json=body)
    # Same body, other key order and spacing: still the same request.
    raw = json.dumps(dict(reversed(list(body.items()))), indent=2)
    again = await api.client.post(
        "/internal/charges", content=raw, headers={"content-type": "application/json"}
    )

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert await api.rows("charges") == 1
    assert await api.rows("outbox") == 1


async def test_same_key_with_another_body_is_422(api: Any) -> None:
    body = api.charge_body()
    assert (await api.client.post("/internal/charges", json=body)).status_code == 201
    other = {**body, "amount": {"amount": 9999, "currency": "USD"}}

    resp = await api.client.post("/internal/charges", json=other)

    assert resp.status_code == 422
    assert resp.json()["type"] == PROBLEM + "idempotency-key-reused"
    assert await api.rows("charges") == 1


async def test_concurrent_first_requests_with_one_key_make_one_charge(api: Any) -> None:
    body = api.charge_body()

    answers = await asyncio.gather(
        *(api.client.post("/internal/charges", json=body) for _ in range(10))
    )

    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 9 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert await api.rows("charges") == 1


async def test_charges_are_listed_per_order_oldest_first(api: Any) -> None:
    declined = await api.charge(token="tok_chargeDeclined", order_id="order-1")
    succeeded = await api.charge(token="tok_visa", order_id="order-1")
    await api.charge(token="tok_visa", order_id="order-2")

    resp = await api.client.get("/internal/charges", params={"order_id": "order-1"})

    assert resp.status_code == 200
    assert [c["id"] for c in resp.json()["items"]] == [declined["id"], succeeded["id"]]
    empty = await api.client.get("/internal/charges", params={"order_id": "order-unknown"})
    assert empty.json() == {"items": []}


async def test_listing_needs_an_order_id(api: Any) -> None:
    assert (await api.client.get("/internal/charges")).status_code == 422
    too_long = await api.client.get("/internal/charges", params={"order_id": "x" * 65})
    assert too_long.status_code == 422


def _without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != field}


MALFORMED: list[tuple[str, Any]] = [
    ("negative amount", lambda b: {**b, "amount": {"amount": -1, "currency": "USD"}}),
    ("zero amount", lambda b: {**b, "amount": {"amount": 0, "currency": "USD"}}),
    ("huge amount", lambda b: {**b, "amount": {"amount": 10**30, "currency": "USD"}}),
    ("amount as string", lambda b: {**b, "amount": {"amount": "2500", "currency": "USD"}}),
    ("amount as float", lambda b: {**b, "amount": {"amount": 2500.0, "currency": "USD"}}),
    ("amount as bool", lambda b: {**b, "amount": {"amount": True, "currency": "USD"}}),
    ("amount as number", lambda b: {**b, "amount": 2500}),
    ("other currency", lambda b: {**b, "amount": {"amount": 1, "currency": "EUR"}}),
    ("extra money field", lambda b: {**b, "amount": {"amount": 1, "currency": "USD", "x": 1}}),
    ("missing key", lambda b: _without(b, "idempotency_key")),
    ("missing order", lambda b: _without(b, "order_id")),
    ("missing customer", lambda b: _without(b, "customer_id")),
    ("missing amount", lambda b: _without(b, "amount")),
    ("missing token", lambda b: _without(b, "payment_token")),
    ("extra field", lambda b: {**b, "status": "succeeded"}),
    ("empty key", lambda b: {**b, "idempotency_key": ""}),
    ("long key", lambda b: {**b, "idempotency_key": "k" * 256}),
    ("order id as number", lambda b: {**b, "order_id": 7}),
    ("not an object", lambda b: [b]),
]


@pytest.mark.parametrize(("case", "mutate"), MALFORMED, ids=[c for c, _ in MALFORMED])
async def test_malformed_charge_bodies_are_422(api: Any, case: str, mutate: Any) -> None:
    resp = await api.client.post("/internal/charges", json=mutate(api.charge_body()))

    assert resp.status_code == 422, case
    assert resp.json()["type"] == PROBLEM + "validation-error"
    assert await api.rows("charges") == 0


async def test_body_that_is_not_json_is_422(api: Any) -> None:
    resp = await api.client.post(
        "/internal/charges", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422
