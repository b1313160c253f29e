"""A request's overall deadline, carried from hop to hop as a relative budget.

The gateway tells a service, in ``X-Request-Budget-Ms``, how many milliseconds it will still
wait for the answer. Only durations cross the wire: service clocks may disagree by minutes
(RELIABILITY.md R17), so each service turns the budget into a deadline on its own monotonic
clock as the request arrives. Its peer calls then wait no longer than the time left, tell the
next service how long that is, and are not sent at all once nothing is left: work for an answer
nobody waits for any more is only load.

A deadline bounds waiting, never effects. From the first call a request makes that is not a
read (anything but GET and HEAD), the deadline is *committed*: that call is still bounded, but
the ones after it are not, because they see an effect through (commit what was reserved, release
or refund what will not be used) and cutting them short would only hand the work to a recovery
loop. Requests without the header, and work outside requests (consumers, recovery loops, tasks
started with ``Runtime.spawn``), have no deadline and behave as before.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass

BUDGET_HEADER = "X-Request-Budget-Ms"
BUDGET_HEADER_RAW = BUDGET_HEADER.lower().encode()
# Ten minutes is beyond any timeout of the platform: a larger value is a caller's mistake, and
# it is clamped rather than refused so the request still gets an answer.
MAX_BUDGET_MS = 600_000
_MAX_DIGITS = 9
# Kept back from a received budget so the answer, even "no time left", can still reach the
# caller before it stops listening: a tenth of the budget, at most this much.
ANSWER_RESERVE_SECONDS = 0.05
# Less than this is no budget: no loopback call with any work behind it answers in less.
MIN_CALL_SECONDS = 0.005
_READS = frozenset({"GET", "HEAD"})


@dataclass
class Deadline:
    """When the request's caller stops waiting, on this process's monotonic clock."""

    expires_at: float
    # Set by the first call that is not a read; see the module's docstring.
    committed: bool = False

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    @classmethod
    def from_budget_ms(cls, budget_ms: int) -> Deadline:
        seconds = budget_ms / 1000
        return cls.after(seconds - min(seconds / 10, ANSWER_RESERVE_SECONDS))

    def remaining(self) -> float:
        return self.expires_at - time.monotonic()


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "request_deadline", default=None
)


def current() -> Deadline | None:
    return _current.get()


def enter(deadline: Deadline | None) -> contextvars.Token[Deadline | None]:
    return _current.set(deadline)


def leave(token: contextvars.Token[Deadline | None]) -> None:
    _current.reset(token)


def parse_budget_ms(raw: bytes | str | None) -> int | None:
    """Milliseconds from a header value; None (no deadline) unless it is a plain non-negative
    integer, clamped to :data:`MAX_BUDGET_MS`. Never raises: a bad header is no reason to fail."""
    if raw is None:
        return None
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    text = text.strip()
    if not text or len(text) > _MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return min(int(text), MAX_BUDGET_MS)


def from_header(raw: bytes | str | None) -> Deadline | None:
    budget_ms = parse_budget_ms(raw)
    return None if budget_ms is None else Deadline.from_budget_ms(budget_ms)


def bounding(method: str) -> Deadline | None:
    """The deadline that bounds a call about to be made with ``method``, or None when it is
    unbounded (no deadline, or already committed). A call that is not a read commits it."""
    deadline = _current.get()
    if deadline is None or deadline.committed:
        return None
    if method.upper() not in _READS:
        deadline.committed = True
    return deadline


def header_value(seconds: float) -> str:
    """The budget header for a call that will be waited on for ``seconds``."""
    return str(max(0, int(seconds * 1000)))


def detached_context() -> contextvars.Context:
    """A copy of the current context without a deadline, for work that outlives the request
    that started it (asyncio copies the context, deadline included, into every task)."""
    context = contextvars.copy_context()
    context.run(_current.set, None)
    return context
