"""Shapes every service shares: money, strict request bodies, pages and opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shopkit.errors import Unprocessable


class StrictModel(BaseModel):
    """Request bodies: unknown fields are rejected (API.md), so mass assignment cannot sneak in."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL; refusing it here keeps SQLite and PostgreSQL alike.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class Money(StrictModel):
    amount: int = Field(strict=True, ge=0, le=10**12, description="minor units (cents)")
    currency: Literal["USD"] = "USD"


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, keys: set[str]) -> dict[str, Any]:
    """Inverse of :func:`encode_cursor`; anything else is the client's mistake (422)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid_cursor() from exc
    if not isinstance(position, dict) or set(position) != keys:
        raise invalid_cursor()
    return position


def invalid_cursor() -> Unprocessable:
    return Unprocessable(
        "cursor is not one this API issued",
        extra={"errors": [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]},
    )
