"""Domain errors of the user service, rendered as problem+json by the kit."""

from __future__ import annotations

from shopkit.errors import Conflict, NotFound, Unauthorized


class EmailTaken(Conflict):
    slug = "email-taken"
    title = "Email address is already registered"


class InvalidCredentials(Unauthorized):
    """The same answer for an unknown email and a wrong password: no account enumeration."""

    slug = "invalid-credentials"
    title = "Invalid email or password"

    def __init__(self) -> None:
        super().__init__("the email or the password is not correct")


class AccountGone(Unauthorized):
    """A valid token whose account no longer exists."""

    def __init__(self) -> None:
        super().__init__("the account of this token no longer exists")


class UserNotFound(NotFound):
    slug = "user-not-found"
    title = "User not found"
