"""The one canonical form of an email address, shared by registration, login and bootstrap."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

# RFC 5321 caps a forward path at 256 octets including the angle brackets.
EMAIL_MAX_LENGTH = 254


def normalize_email(value: str) -> str:
    """Validated, lower-cased address; ``ValueError`` (a 422 inside a model) when it is not one.

    Addresses are compared case-insensitively everywhere, so they are stored lower-cased. ``.test``
    domains are accepted (``test_environment``): this is a demo shop, and no mail is checked
    for deliverability here anyway.
    """
    candidate = value.strip()
    if len(candidate) > EMAIL_MAX_LENGTH:
        raise ValueError(f"an email address has at most {EMAIL_MAX_LENGTH} characters")
    try:
        checked = validate_email(candidate, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from exc
    return checked.normalized.lower()


def canonical_or_none(value: str) -> str | None:
    """The canonical form of a login email, or None when no account could have it."""
    try:
        return normalize_email(value)
    except ValueError:
        return None
