"""Shapes and helpers shared by the peer clients."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, Field
from shopkit.errors import PROBLEM_BASE
from shopkit.http import PeerResponse, PeerUnavailable


class PeerMoney(BaseModel):
    amount: int = Field(ge=0)
    currency: Literal["USD"] = "USD"


def segment(value: str) -> str:
    """One path segment: ids come from tokens and URLs, so they are never trusted raw."""
    return quote(value, safe="")


def problem_slug(body: Any) -> str:
    """The slug of a peer's problem+json answer (the end of its ``type``), or ""."""
    if isinstance(body, dict):
        kind = body.get("type")
        if isinstance(kind, str):
            if kind.startswith(PROBLEM_BASE):
                return kind[len(PROBLEM_BASE) :]
            return kind.rsplit("/", 1)[-1]
    return ""


def unexpected(peer: str, resp: PeerResponse) -> PeerUnavailable:
    """An answer the contract does not allow at this point is a broken peer, not our 500."""
    slug = problem_slug(resp.body)
    return PeerUnavailable(peer, f"unexpected answer {resp.status} {slug}".rstrip())
