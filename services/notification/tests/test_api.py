"""The public list and the internal deliveries route, over notifications made from real events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from shop_notification.models import Base
from shopkit.migrations import schema_drift
from shopkit.schemas import encode_cursor
from shopkit.settings import DEV_INTERNAL_TOKEN
from shopkit.testing import eventually

WAIT = 30.0


async def test_list_pages_newest_first_and_only_the_callers(
    app: FastAPI, bus: Any, serving: Any, users: Any, tokens: Any, rows: Any
) -> None:
    alice = users.add("alice@example.com")
    bob = users.add("bob@example.com")
    stranger = users.add("stranger@example.com")
    alice_orders = [str(uuid.uuid4()) for _ in range(5)]
    async with serving(app) as client:
        for order_id in alice_orders:
            await bus.publish("order.confirmed", bus.confirmed(alice, order_id=order_id))
        bob_order = str(uuid.uuid4())
        await bus.publish(
            "payment.declined",
            {
                "order_id": bob_order,
                "customer_id": bob,
                "charge_id": str(uuid.uuid4()),
                "decline_code": "insufficient-funds",
                "amount": {"amount": 900, "currency": "USD"},
            },
        )

        async def all_sent() -> bool:
            stored = await rows()
            return len(stored) == 6 and all(r.status == "sent" for r in stored)

        assert await eventually(all_sent, timeout=WAIT)
        stored = await rows()
        newest_first = [
            r.id
            for r in sorted(stored, key=lambda r: (r.created_at, r.id), reverse=True)
            if r.customer_id == alice
        ]

        seen: list[dict[str, Any]] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            resp = await client.get(
                "/api/v1/notifications", params=params, headers=tokens.headers(alice)
            )
            assert resp.status_code == 200, resp.text
            page = resp.json()
            assert len(page["items"]) <= 2
            seen.extend(page["items"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert [n["id"] for n in seen] == newest_first
        assert {n["order_id"] for n in seen} == set(alice_orders)
        first = seen[0]
        assert set(first) == {
            "id",
            "type",
            "order_id",
            "channel",
            "subject",
            "status",
            "created_at",
        }
        assert first["type"] == "order_confirmed"
        assert first["channel"] == "email"
        assert first["status"] == "sent"
        assert first["subject"] == f"Your Sweet Slice order #{first['order_id'][:8]} is confirmed"
        assert datetime.fromisoformat(first["created_at"]).utcoffset() is not None

        resp = await client.get("/api/v1/notifications", headers=tokens.headers(bob))
        assert [(n["type"], n["order_id"]) for n in resp.json()["items"]] == [
            ("payment_failed", bob_order)
        ]
        resp = await client.get("/api/v1/notifications", headers=tokens.headers(stranger))
        assert resp.status_code == 200
        assert resp.json() == {"items": [], "next_cursor": None}


async def test_the_list_requires_a_valid_token(app: FastAPI, serving: Any, tokens: Any) -> None:
    async with serving(app) as client:
        resp = await client.get("/api/v1/notifications")
        assert resp.status_code == 401
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.headers["www-authenticate"].startswith("Bearer")
        resp = await client.get(
            "/api/v1/notifications", headers={"Authorization": "Bearer not-a-token"}
        )
        assert resp.status_code == 401
        expired = tokens.token(str(uuid.uuid4()), ttl=-3600)
        resp = await client.get(
            "/api/v1/notifications", headers={"Authorization": f"Bearer {expired}"}
        )
        assert resp.status_code == 401


async def test_bad_paging_parameters_are_422(app: FastAPI, serving: Any, tokens: Any) -> None:
    headers = tokens.headers(str(uuid.uuid4()))
    bad_cursors = [
        "!!!",
        "bm90IGpzb24",  # base64 of "not json"
        encode_cursor({"created_at": "2025-01-01T00:00:00+00:00"}),
        encode_cursor({"created_at": "yesterday", "id": "x"}),
        encode_cursor({"created_at": "2025-01-01T00:00:00", "id": "x"}),  # no time zone
        encode_cursor({"created_at": 12, "id": "x"}),
        encode_cursor({"created_at": "0001-01-01T00:00:00+14:00", "id": "x"}),
        "A" * 600,
    ]
    async with serving(app) as client:
        for cursor in bad_cursors:
            resp = await client.get(
                "/api/v1/notifications", params={"cursor": cursor}, headers=headers
            )
            assert resp.status_code == 422, cursor
            assert resp.headers["content-type"].startswith("application/problem+json")
        for limit in ("0", "101", "ten", "99999999999999999999999"):
            resp = await client.get(
                "/api/v1/notifications", params={"limit": limit}, headers=headers
            )
            assert resp.status_code == 422, limit
        good = encode_cursor({"created_at": "2025-01-01T00:00:00+00:00", "id": "x"})
        resp = await client.get("/api/v1/notifications", params={"cursor": good}, headers=headers)
        assert resp.status_code == 200


async def test_deliveries_need_the_internal_token(app: FastAPI, serving: Any, tokens: Any) -> None:
    async with serving(app) as client:
        assert (await client.get("/internal/deliveries")).status_code == 401
        wrong = {"X-Internal-Token": "guess"}
        assert (await client.get("/internal/deliveries", headers=wrong)).status_code == 401
        # A customer's bearer token is no internal token.
        resp = await client.get("/internal/deliveries", headers=tokens.headers())
        assert resp.status_code == 401
        ok = {"X-Internal-Token": DEV_INTERNAL_TOKEN}
        resp = await client.get("/internal/deliveries", headers=ok)
        assert resp.status_code == 200
        assert resp.json() == {"items": []}


async def test_deliveries_filter_by_order(
    app: FastAPI, bus: Any, serving: Any, users: Any, rows: Any
) -> None:
    customer = users.add("filter@example.com")
    wanted, other = str(uuid.uuid4()), str(uuid.uuid4())
    async with serving(app) as client:
        wanted_event = await bus.publish(
            "order.confirmed", bus.confirmed(customer, order_id=wanted)
        )
        await bus.publish("order.confirmed", bus.confirmed(customer, order_id=other))

        async def both() -> bool:
            return len(await rows()) == 2

        assert await eventually(both, timeout=WAIT)
        resp = await client.get(
            "/internal/deliveries",
            params={"order_id": wanted},
            headers={"X-Internal-Token": DEV_INTERNAL_TOKEN},
        )
        assert resp.status_code == 200
        assert [(d["event_id"], d["order_id"]) for d in resp.json()["items"]] == [
            (wanted_event, wanted)
        ]


async def test_migrations_match_the_models(app: FastAPI, serving: Any) -> None:
    async with serving(app) as client:
        assert await schema_drift(app.state.db, Base.metadata) == []

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        # The broker connects in the background: ready once it has.
        assert await eventually(ready, timeout=WAIT)
        resp = await client.get("/readyz")
        assert set(resp.json()["checks"]) == {"database", "jwks", "broker"}
