"""Request and response bodies of the user service."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints
from shopkit.schemas import StrictModel

from shop_user.emails import EMAIL_MAX_LENGTH, normalize_email
from shop_user.settings import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH

# Passwords are taken verbatim: StrictModel strips strings, which would silently change them.
NewPassword = Annotated[
    str,
    StringConstraints(
        strip_whitespace=False, min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH
    ),
]
GivenPassword = Annotated[
    str, StringConstraints(strip_whitespace=False, min_length=1, max_length=PASSWORD_MAX_LENGTH)
]
# Bounded before validation so a huge string never reaches the email parser.
Email = Annotated[
    str,
    StringConstraints(min_length=3, max_length=EMAIL_MAX_LENGTH),
    AfterValidator(normalize_email),
]


def _printable(value: str) -> str:
    # Control characters (NUL above all, which PostgreSQL refuses in text) have no place in a
    # display name that ends up in emails and logs.
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("must not contain control characters")
    return value


DisplayName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_printable)]


class UserCreate(StrictModel):
    email: Email
    password: NewPassword
    name: DisplayName


class AccessTokenCreate(StrictModel):
    """Login credentials."""

    # Not validated as an address: a malformed one simply matches no account (401, not 422).
    email: str = Field(min_length=1, max_length=EMAIL_MAX_LENGTH)
    password: GivenPassword


class UserRead(BaseModel):
    id: str
    email: str
    name: str


class UserProfileRead(UserRead):
    roles: list[str]


class AccessTokenRead(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class JwksRead(BaseModel):
    keys: list[dict[str, str]]
