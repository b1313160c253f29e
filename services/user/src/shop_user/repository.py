"""Every query of the user service."""

from __future__ import annotations

from dataclasses import dataclass

from shopkit.db import Database, add_unique
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shop_user.models import User, UserRole


class DuplicateEmail(Exception):
    """The unique constraint on the email refused an insert."""


@dataclass(frozen=True)
class Credentials:
    user_id: str
    email: str
    password_hash: str
    roles: list[str]


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def email_exists(session: AsyncSession, email: str) -> bool:
    result = await session.execute(select(User.id).where(User.email == email))
    return result.first() is not None


async def add_user(
    session: AsyncSession,
    *,
    user_id: str,
    email: str,
    name: str,
    password_hash: str,
    roles: list[str],
) -> User:
    user = User(
        id=user_id,
        email=email,
        name=name,
        password_hash=password_hash,
        role_rows=[UserRole(role=role) for role in roles],
    )
    # Losing a race to a concurrent insert leaves the caller's transaction usable (the admin
    # bootstrap then carries on with the winner's row).
    if not await add_unique(session, user):
        raise DuplicateEmail(email)
    return user


async def add_role(session: AsyncSession, user: User, role: str) -> None:
    """Grants ``role``; a concurrent grant of the same role counts as success."""
    if role in user.roles:
        return
    await add_unique(session, UserRole(user_id=user.id, role=role))
    await session.refresh(user, ["role_rows"])


async def set_password_hash(session: AsyncSession, user_id: str, password_hash: str) -> None:
    user = await session.get(User, user_id)
    if user is not None:
        user.password_hash = password_hash
        await session.flush()


async def find_credentials(db: Database, email: str) -> Credentials | None:
    """A login's lookup, in a short read of its own.

    The request's own session would keep its transaction (and on SQLite a write transaction
    holds the database lock) through the argon2 check, serializing every login behind it; a
    read session takes no lock at all.
    """
    async with db.session(read_only=True) as session:
        user = await get_user_by_email(session, email)
        if user is None:
            return None
        return Credentials(user.id, user.email, user.password_hash, user.roles)
