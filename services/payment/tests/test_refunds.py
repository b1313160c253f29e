"""Refunds: only of succeeded charges, never beyond the charge, idempotent by key."""

from __future__ import annotations

import asyncio
from typing import Any

PROBLEM = "https://sweetslice.dev/problems/"


async def test_full_refund(api: Any) -> None:
    charge = await api.charge(amount=3000)

    resp = await api.client.post("/internal/refunds", json=api.refund_body(charge["id"], 3000))

    assert resp.status_code == 201, resp.text
    refund = resp.json()
    assert refund["charge_id"] == charge["id"]
    assert refund["order_id"] == charge["order_id"]
    assert refund["amount"] == {"amount": 3000, "currency": "USD"}
    listed = await api.client.get("/internal/charges", params={"order_id": charge["order_id"]})
    assert listed.json()["items"][0]["refunded"] == {"amount": 3000, "currency": "USD"}
    assert await api.rows("refunds") == 1
    assert await api.rows("outbox") == 1


async def test_partial_refunds_add_up_to_the_charge_and_no_further(api: Any) -> None:
    charge = await api.charge(amount=1000)
    first = await api.client.post("/internal/refunds", json=api.refund_body(charge["id"], 400))
    second = await api.client.post("/internal/refunds", json=api.refund_body(charge["id"], 600))
    over = await api.client.post("/internal/refunds", json=api.refund_body(charge["id"], 1))

    assert (first.status_code, second.status_code) == (201, 201)
    assert over.status_code == 409
    assert over.json()["type"] == PROBLEM + "refund-exceeds-charge"
    assert over.json()["refundable"] == {"amount": 0, "currency": "USD"}
    assert await api.rows("refunds") == 2


async def test_refund_larger_than_the_charge_is_409(api: Any) -> None:
    charge = await api.charge(amount=1000)
    await api.client.post("/internal/refunds", json=api.refund_body(charge["id"], 250))

    resp = await api.client.post("/internal/refunds", json=api.refund_body(charge["id"], 751))

    assert resp.status_code == 409
    assert resp.json()["refundable"] == {"amount": 750, "currency": "USD"}
    assert await api.rows("refunds") == 1


async def test_refund_replay_and_key_reuse(api: Any) -> None:
    charge = await api.charge(amount=1000)
    body = api.refund_body(charge["id"], 1000)
    first = await api.client.post("/internal/refunds", json=body)
    # The charge is now fully refunded, yet the replay still answers the stored refund.
    again = await api.client.post("/internal/refunds", json=body)
    reused = await api.client.post(
        "/internal/refunds", json={**body, "amount": {"amount": 10, "currency": "USD"}}
    )

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert reused.status_code == 422
    assert reused.json()["type"] == PROBLEM + "idempotency-key-reused"
    assert await api.rows("refunds") == 1
    assert await api.rows("outbox") == 1


async def test_concurrent_refunds_with_one_key_make_one_refund(api: Any) -> None:
    charge = await api.charge(amount=1000)
    body = api.refund_body(charge["id"], 700)

    answers = await asyncio.gather(
        *(api.client.post("/internal/refunds", json=body) for _ in range(10))
    )

    assert sorted(a.status_code for a in answers) == [200] * 9 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert await api.rows("refunds") == 1


async def test_concurrent_refunds_with_distinct_keys_never_exceed_the_charge(api: Any) -> None:
    charge = await api.charge(amount=1000)

    answers = await asyncio.gather(
        *(
            api.client.post("/internal/refunds", json=api.refund_body(charge["id"], 300))
            for _ in range(6)
        )
    )

    assert sorted(a.status_code for a in answers) == [201] * 3 + [409] * 3
    ledger = (await api.client.get("/internal/ledger")).json()
    assert ledger["refunded"] == 900


async def test_declined_charge_cannot_be_refunded(api: Any) -> None:
    charge = await api.charge(token="tok_chargeDeclined", amount=1000)

    resp = await api.client.post("/internal/refunds", json=api.refund_body(charge["id"], 1000))

    assert resp.status_code == 409
    assert resp.json()["type"] == PROBLEM + "charge-not-refundable"
    assert await api.rows("refunds") == 0


async def test_unknown_charge_is_404(api: Any) -> None:
    resp = await api.client.post("/internal/refunds", json=api.refund_body("no-such-charge", 1))

    assert resp.status_code == 404
    assert resp.json()["type"] == PROBLEM + "charge-not-found"


async def test_malformed_refund_bodies_are_422(api: Any) -> None:
    charge = await api.charge(amount=1000)
    good = api.refund_body(charge["id"], 100)
    bad_bodies = [
        {**good, "amount": {"amount": -5, "currency": "USD"}},
        {**good, "amount": {"amount": 0, "currency": "USD"}},
        {**good, "amount": {"amount": "100", "currency": "USD"}},
        {**good, "amount": {"amount": 100.5, "currency": "USD"}},
        {k: v for k, v in good.items() if k != "charge_id"},
        {**good, "reason": "because"},
        {**good, "charge_id": "c" * 65},
    ]
    for body in bad_bodies:
        resp = await api.client.post("/internal/refunds", json=body)
        assert resp.status_code == 422, body
    assert await api.rows("refunds") == 0


async def test_ledger_totals(api: Any) -> None:
    a1 = await api.charge(amount=1000, order_id="order-a")
    await api.charge(token="tok_chargeDeclined", amount=5000, order_id="order-a")
    await api.charge(amount=2000, order_id="order-b")
    await api.charge(token="tok_chargeDeclinedInsufficientFunds", amount=700, order_id="order-c")
    await api.client.post("/internal/refunds", json=api.refund_body(a1["id"], 300))
    await api.client.post("/internal/refunds", json=api.refund_body(a1["id"], 200))

    resp = await api.client.get("/internal/ledger")

    assert resp.status_code == 200
    assert resp.json() == {
        "charged": 3000,
        "refunded": 500,
        "orders": {
            "order-a": {"charges": 1, "charged": 1000, "refunds": 2, "refunded": 500},
            "order-b": {"charges": 1, "charged": 2000, "refunds": 0, "refunded": 0},
        },
    }


async def test_empty_ledger(api: Any) -> None:
    resp = await api.client.get("/internal/ledger")
    assert resp.json() == {"charged": 0, "refunded": 0, "orders": {}}
