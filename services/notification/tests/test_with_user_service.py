"""With the real user service: its account is the recipient and its token reads the list.

The user service runs in-process under uvicorn on a loopback port, so the notification service
reaches it over real HTTP (its internal route and its JWKS), as it does when deployed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from shop_notification.app import create_app
from shop_user.app import create_app as create_user_app
from shop_user.settings import UserSettings
from shopkit.testing import eventually, serve_app

WAIT = 30.0


@pytest.fixture
async def user_service(tmp_path: Path) -> AsyncIterator[str]:
    settings = UserSettings(
        data_dir=tmp_path / "user-data",
        log_json=False,
        # The cheapest argon2 parameters: these tests are about email, not password hashing.
        argon2_time_cost=1,
        argon2_memory_cost_kib=8,
    )
    async with serve_app(create_user_app(settings)) as url:
        yield url


async def test_a_real_account_gets_the_email_and_sees_it_listed(
    user_service: str, make_settings: Any, bus: Any, serving: Any, smtp: Any
) -> None:
    email = f"customer-{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(base_url=user_service) as users:
        resp = await users.post(
            "/api/v1/auth/register",
            json={"email": email, "password": "correct horse battery", "name": "Robin"},
        )
        assert resp.status_code == 201, resp.text
        customer = resp.json()["id"]
        resp = await users.post(
            "/api/v1/auth/login", json={"email": email, "password": "correct horse battery"}
        )
        assert resp.status_code == 200, resp.text
        token = resp.json()["access_token"]

    app = create_app(make_settings(user_url=user_service))
    order_id = str(uuid.uuid4())
    async with serving(app) as client:
        await bus.publish("order.confirmed", bus.confirmed(customer, order_id=order_id))
        assert await eventually(lambda: _value(len(smtp.received) == 1), timeout=WAIT)
        [received] = smtp.received
        assert received.recipients == [email]
        assert received.message["Subject"] == f"Your Sweet Slice order #{order_id[:8]} is confirmed"

        resp = await client.get(
            "/api/v1/notifications", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status_code == 200, resp.text
        [listed] = resp.json()["items"]
        assert (listed["order_id"], listed["type"], listed["status"]) == (
            order_id,
            "order_confirmed",
            "sent",
        )


async def _value(value: bool) -> bool:
    return value
