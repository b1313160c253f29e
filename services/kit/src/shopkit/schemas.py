"""Shapes every service shares: money, strict request bodies, pages and opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
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
    amount: int = Field(strict=True, ge=0, le=10**15, description="minor units (cents)")
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


def encode_time_cursor(created_at: datetime, item_id: str) -> str:
    """Cursor of a newest-first list keyed on (created_at, id)."""
    return encode_cursor({"created_at": created_at.isoformat(), "id": item_id})


def decode_time_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of :func:`encode_time_cursor`; an aware UTC time, or 422 for anything else."""
    position = decode_cursor(cursor, {"created_at", "id"})
    created_at, item_id = position["created_at"], position["id"]
    if not isinstance(created_at, str) or not isinstance(item_id, str):
        raise invalid_cursor()
    try:
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise invalid_cursor()
        # Year 1 in a positive offset overflows on conversion: a crafted cursor, not a 500.
        return moment.astimezone(UTC), item_id
    except (ValueError, OverflowError) as exc:
        raise invalid_cursor() from exc


def invalid_cursor() -> Unprocessable:
    return Unprocessable(
        "cursor is not one this API issued",
        extra={"errors": [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]},
    )
