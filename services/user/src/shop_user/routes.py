"""HTTP routes of the user service: thin, they parse, call the service and shape the answer."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from shopkit.auth import JWKS_PATH, CurrentUser, Internal
from shopkit.deps import SessionDep

from shop_user import service
from shop_user.deps import DatabaseDep, PasswordsDep, SignerDep
from shop_user.schemas import (
    AccessTokenCreate,
    AccessTokenRead,
    JwksRead,
    UserCreate,
    UserProfileRead,
    UserRead,
)

public = APIRouter(prefix="/api/v1", tags=["accounts"])
internal = APIRouter(prefix="/internal", tags=["internal"], dependencies=[Internal])
keys = APIRouter(tags=["keys"])


@public.post("/auth/register", status_code=status.HTTP_201_CREATED)
async def register(body: UserCreate, session: SessionDep, passwords: PasswordsDep) -> UserRead:
    """Create a customer account."""
    return await service.register(body, session=session, passwords=passwords)


@public.post("/auth/login")
async def login(
    *,
    body: AccessTokenCreate,
    response: Response,
    session: SessionDep,
    db: DatabaseDep,
    passwords: PasswordsDep,
    signer: SignerDep,
) -> AccessTokenRead:
    """Exchange an email and password for an access token."""
    response.headers["Cache-Control"] = "no-store"
    return await service.login(body, session=session, db=db, passwords=passwords, signer=signer)


@public.get("/users/me")
async def me(principal: CurrentUser, session: SessionDep) -> UserProfileRead:
    """The account of the token's bearer."""
    return await service.me(principal, session=session)


@keys.get(JWKS_PATH)
async def jwks(response: Response, signer: SignerDep) -> JwksRead:
    """Public keys that verify the access tokens this service signs."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return JwksRead.model_validate(signer.jwks)


@internal.get("/users/{user_id}")
async def get_user(user_id: str, session: SessionDep) -> UserProfileRead:
    """One account, for peers (notification's recipient, order's customer check)."""
    return await service.get_user(user_id, session=session)
