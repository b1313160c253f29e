"""Accounts, login and the administrator bootstrap.

Functions take the session as a keyword argument and never commit: the request (or the
bootstrap's unit of work) commits once.
"""

from __future__ import annotations

import logging
import uuid

from shopkit.auth import Principal
from shopkit.db import Database
from sqlalchemy.ext.asyncio import AsyncSession

from shop_user import repository
from shop_user.emails import canonical_or_none
from shop_user.errors import AccountGone, EmailTaken, InvalidCredentials, UserNotFound
from shop_user.models import ROLE_ADMIN, ROLE_CUSTOMER, User
from shop_user.passwords import Passwords
from shop_user.schemas import (
    AccessTokenCreate,
    AccessTokenRead,
    UserCreate,
    UserProfileRead,
    UserRead,
)
from shop_user.tokens import TokenSigner

log = logging.getLogger("shop_user.service")


def _profile(user: User) -> UserProfileRead:
    return UserProfileRead(id=user.id, email=user.email, name=user.name, roles=user.roles)


async def register(body: UserCreate, *, session: AsyncSession, passwords: Passwords) -> UserRead:
    # Hashed before touching the database: on SQLite a transaction holds the write lock.
    password_hash = await passwords.hash(body.password)
    if await repository.email_exists(session, body.email):
        raise EmailTaken()
    try:
        user = await repository.add_user(
            session,
            user_id=str(uuid.uuid4()),
            email=body.email,
            name=body.name,
            password_hash=password_hash,
            roles=[ROLE_CUSTOMER],
        )
    except repository.DuplicateEmail as exc:
        raise EmailTaken() from exc
    return UserRead(id=user.id, email=user.email, name=user.name)


async def login(
    body: AccessTokenCreate,
    *,
    session: AsyncSession,
    db: Database,
    passwords: Passwords,
    signer: TokenSigner,
) -> AccessTokenRead:
    email = canonical_or_none(body.email)
    found = await repository.find_credentials(db, email) if email is not None else None
    # Verified even when no account matched (against a dummy hash): the answer and its timing
    # are the same for an unknown email and a wrong password.
    matches = await passwords.verify(found.password_hash if found else None, body.password)
    if found is None or not matches:
        raise InvalidCredentials()
    if passwords.needs_rehash(found.password_hash):
        new_hash = await passwords.hash(body.password)
        await repository.set_password_hash(session, found.user_id, new_hash)
    token = signer.issue(user_id=found.user_id, email=found.email, roles=found.roles)
    return AccessTokenRead(access_token=token, expires_in=signer.ttl_seconds)


async def me(principal: Principal, *, session: AsyncSession) -> UserProfileRead:
    user = await repository.get_user(session, principal.user_id)
    if user is None:
        raise AccountGone()
    return _profile(user)


def _is_user_id(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


async def get_user(user_id: str, *, session: AsyncSession) -> UserProfileRead:
    # Ids are uuid4 strings: anything else is unknown without asking the database.
    user = await repository.get_user(session, user_id) if _is_user_id(user_id) else None
    if user is None:
        raise UserNotFound("no user has this id")
    return _profile(user)


async def ensure_admin(
    email: str, password: str, *, session: AsyncSession, passwords: Passwords
) -> UserProfileRead:
    """Creates the administrator or grants an existing account the admin role (idempotent).

    An existing account keeps its password: the variables seed the account, they do not
    override a password changed since.
    """
    user = await repository.get_user_by_email(session, email)
    if user is None:
        password_hash = await passwords.hash(password)
        try:
            user = await repository.add_user(
                session,
                user_id=str(uuid.uuid4()),
                email=email,
                name="Administrator",
                password_hash=password_hash,
                roles=[ROLE_ADMIN, ROLE_CUSTOMER],
            )
            log.info("created the administrator account %s", email)
            return _profile(user)
        except repository.DuplicateEmail:
            # Another instance starting at the same time created it first.
            user = await repository.get_user_by_email(session, email)
            if user is None:
                raise
    await repository.add_role(session, user, ROLE_ADMIN)
    return _profile(user)
