"""The administrator account created at start from SWEETSLICE_ADMIN_EMAIL/_PASSWORD."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import TYPE_CHECKING

import jwt
import pytest
from shop_user import repository
from shop_user.models import UserRole
from sqlalchemy import select

if TYPE_CHECKING:
    from conftest import Api, ApiFactory

ADMIN = {"admin_email": "Chef@Example.com", "admin_password": "admin password 42"}


async def roles_of(api: Api, user_id: str) -> list[str]:
    async with api.app.state.db.session() as session:
        result = await session.execute(select(UserRole.role).where(UserRole.user_id == user_id))
        return sorted(result.scalars())


async def test_admin_is_bootstrapped_and_its_token_has_the_admin_role(
    api_factory: ApiFactory,
) -> None:
    async with api_factory(**ADMIN) as api:
        token = await api.login("chef@example.com", "admin password 42")
        claims = jwt.decode(token, options={"verify_signature": False})
        assert "admin" in claims["roles"]
        me = await api.me(token)
        assert me.status_code == 200, me.text
        assert me.json()["email"] == "chef@example.com"
        assert me.json()["roles"] == ["admin", "customer"]


async def test_bootstrap_is_idempotent_over_restarts(api_factory: ApiFactory) -> None:
    async with api_factory(**ADMIN) as api:
        [first] = await api.users_with_email("chef@example.com")
        first_hash = first.password_hash
    async with api_factory(**ADMIN) as api:
        [again] = await api.users_with_email("chef@example.com")
        assert again.id == first.id
        assert again.password_hash == first_hash
        assert await roles_of(api, again.id) == ["admin", "customer"]
        assert await api.user_count() == 1
        await api.login("chef@example.com", "admin password 42")


async def test_existing_customer_is_promoted(api_factory: ApiFactory) -> None:
    async with api_factory() as api:
        created = await api.register("chef@example.com", password="customer password")
        assert await roles_of(api, created["id"]) == ["customer"]
    async with api_factory(**ADMIN) as api:
        assert await roles_of(api, created["id"]) == ["admin", "customer"]
        assert await api.user_count() == 1
        # The account keeps its own password; the variables only seed a missing account.
        token = await api.login("chef@example.com", "customer password")
        assert (await api.me(token)).json()["roles"] == ["admin", "customer"]


async def test_no_bootstrap_unless_both_variables_are_set(api_factory: ApiFactory) -> None:
    async with api_factory(admin_email="chef@example.com") as api:
        assert await api.user_count() == 0
    async with api_factory(admin_password="admin password 42") as api:
        assert await api.user_count() == 0


async def test_instances_starting_together_create_one_admin(api_factory: ApiFactory) -> None:
    async with api_factory() as api:
        pass  # the schema exists; the race is about the bootstrap itself
    barrier = asyncio.Event()

    async def start() -> None:
        await barrier.wait()
        async with api_factory(**ADMIN):
            pass

    tasks = [asyncio.create_task(start()) for _ in range(4)]
    barrier.set()
    await asyncio.gather(*tasks)
    async with api_factory() as api:
        [admin] = await api.users_with_email("chef@example.com")
        assert await roles_of(api, admin.id) == ["admin", "customer"]


async def test_losing_an_insert_race_leaves_the_transaction_usable(api: Api) -> None:
    # What a concurrent start looks like on PostgreSQL, where the second insert is refused by
    # the unique constraint instead of waiting for SQLite's write lock.
    async with api.app.state.db.session() as session:
        await repository.add_user(
            session,
            user_id="a" * 36,
            email="twice@example.com",
            name="First",
            password_hash="x",
            roles=["customer"],
        )
    async with api.app.state.db.session() as session:
        with pytest.raises(repository.DuplicateEmail):
            await repository.add_user(
                session,
                user_id="b" * 36,
                email="twice@example.com",
                name="Second",
                password_hash="x",
                roles=["customer"],
            )
        user = await repository.get_user_by_email(session, "twice@example.com")
        assert user is not None
        await repository.add_role(session, user, "admin")
        await repository.add_role(session, user, "admin")
    [stored] = await api.users_with_email("twice@example.com")
    assert stored.name == "First"
    assert await roles_of(api, stored.id) == ["admin", "customer"]


def test_admin_variables_are_read_by_their_global_names() -> None:
    # A child process, so the variables are real environment without touching ours.
    code = (
        "from shop_user.settings import UserSettings\n"
        "s = UserSettings()\n"
        "print(s.admin_credentials)\n"
    )
    env = {
        "SWEETSLICE_ADMIN_EMAIL": "Boss@Example.com",
        "SWEETSLICE_ADMIN_PASSWORD": "from the environment",
        "PATH": "",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "('boss@example.com', 'from the environment')"
