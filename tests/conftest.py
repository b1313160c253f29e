"""Fixtures of every suite that drives a running platform (each suite defines ``platform``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.e2e.support import ADMIN, INTERNAL_TOKEN, RunningPlatform, login


@pytest.fixture
async def internal(platform: RunningPlatform) -> AsyncIterator[httpx.AsyncClient]:
    """Straight to the services' internal APIs and /metrics, where effects are recorded."""
    async with httpx.AsyncClient(headers={"X-Internal-Token": INTERNAL_TOKEN}, timeout=30) as c:
        yield c


@pytest.fixture
async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {await login(client, *ADMIN)}"}
