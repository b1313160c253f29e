"""The service's wall clock, and the fault-injection switch that shifts it.

Every wall-clock reading that decides something goes through here: timestamps stored in the
database (:func:`shopkit.db.utcnow`), a token's ``iat``/``exp`` when it is minted and when it is
checked, a reservation's expiry. That lets the fault suite run one service with its clock minutes
off (RELIABILITY.md R17) without touching the machine's clock, which the other processes share.

The offset comes from the ``fault_clock_offset_seconds`` setting of the service, is 0 unless a
test sets it, and is refused in production. Monotonic timers (timeouts, breakers, backoff, the
JWKS refetch interval) measure durations, not dates, and are never shifted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_offset = 0.0


def set_offset(seconds: float) -> None:
    """Shift this process's wall clock by ``seconds`` (a fault-injection switch for tests)."""
    global _offset  # noqa: PLW0603 - one clock per process, like the real one
    _offset = float(seconds)


def offset() -> float:
    return _offset


def now() -> float:
    """Seconds since the epoch, as this service's (possibly shifted) clock says."""
    return time.time() + _offset


def utcnow() -> datetime:
    """The current time as an aware UTC datetime, on this service's clock."""
    return datetime.now(UTC) + timedelta(seconds=_offset)


@contextmanager
def shifted(seconds: float) -> Iterator[None]:
    """The clock shifted by ``seconds`` for the body of the block (tests in one process)."""
    before = _offset
    set_offset(seconds)
    try:
        yield
    finally:
        set_offset(before)
