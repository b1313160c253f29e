"""Internal routes: /internal/users/{id} for peers holding the internal token."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Api


async def test_internal_user_lookup(api: Api) -> None:
    created = await api.register("Lookup@Example.com", name="Lou Kup")
    resp = await api.client.get(f"/internal/users/{created['id']}", headers=api.internal())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "id": created["id"],
        "email": "lookup@example.com",
        "name": "Lou Kup",
        "roles": ["customer"],
    }


@pytest.mark.parametrize(
    "user_id",
    [
        "0b7c1a36-4a63-4d43-9d8e-2d6f0f5d7c11",
        "0B7C1A36-4A63-4D43-9D8E-2D6F0F5D7C11",
        "x" * 5000,
    ],
)
async def test_internal_unknown_user_is_404(api: Api, user_id: str) -> None:
    await api.register()
    resp = await api.client.get(f"/internal/users/{user_id}", headers=api.internal())
    body = api.problem(resp, 404)
    assert body["type"].endswith("/user-not-found")


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Internal-Token": "wrong"}, {"X-Internal-Token": ""}],
)
async def test_internal_route_needs_the_internal_token(api: Api, headers: dict[str, str]) -> None:
    created = await api.register()
    resp = await api.client.get(f"/internal/users/{created['id']}", headers=headers)
    api.problem(resp, 401)
    token = await api.login(created["email"])
    # A customer's bearer token is no substitute for the internal token.
    resp = await api.client.get(
        f"/internal/users/{created['id']}", headers={**headers, **api.bearer(token)}
    )
    api.problem(resp, 401)
