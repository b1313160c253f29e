"""Per-peer protection for outbound calls: circuit breaker, bulkhead, retries with a budget.

Defaults follow resilience4j's spirit: a breaker judges a sliding window of recent calls and
opens when at least half of them failed (after a minimum number of calls), stays open for a
few seconds failing fast, then lets a handful of trial calls through before closing again.
Retries are for calls that are safe to repeat (reads, and writes made idempotent by a key),
only after fast failures (a refused or reset connection, a 5xx), with jittered exponential
backoff, and never more than a fraction of the calls made: a retry storm cannot start here.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from pydantic import BaseModel, Field


class ResiliencePolicy(BaseModel):
    """One policy for every peer of a service, from its settings (``<PREFIX>RESILIENCE__*``)."""

    retries: int = Field(default=2, ge=0, le=10)
    backoff_base_seconds: float = Field(default=0.05, gt=0)
    backoff_max_seconds: float = Field(default=1.0, gt=0)
    retry_budget_ratio: float = Field(default=0.2, ge=0, le=1)
    breaker_window: int = Field(default=20, ge=1)
    breaker_minimum_calls: int = Field(default=10, ge=1)
    breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_open_seconds: float = Field(default=5.0, gt=0)
    breaker_half_open_calls: int = Field(default=3, ge=1)
    max_concurrency: int = Field(default=100, ge=1)


class BreakerState(IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CircuitBreaker:
    def __init__(
        self, policy: ResiliencePolicy, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self.state = BreakerState.CLOSED
        self._clock = clock
        self._outcomes: deque[bool] = deque()
        self._opened_at = 0.0
        self._trials = 0
        self._trial_successes = 0

    def _now(self) -> float:
        return self._clock()

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open, only a few trial calls do."""
        if self.state is BreakerState.OPEN:
            if self._now() - self._opened_at < self.policy.breaker_open_seconds:
                return False
            self.state = BreakerState.HALF_OPEN
            self._trials = self._trial_successes = 0
        if self.state is BreakerState.HALF_OPEN:
            if self._trials >= self.policy.breaker_half_open_calls:
                return False
            self._trials += 1
        return True

    def refusing(self) -> bool:
        """Whether calls are failed fast right now (open, and its period not over); unlike
        :meth:`allow` it takes no half-open trial, so callers may ask it before any work."""
        return (
            self.state is BreakerState.OPEN
            and self._now() - self._opened_at < self.policy.breaker_open_seconds
        )

    def record(self, *, success: bool) -> None:
        if self.state is BreakerState.HALF_OPEN:
            if not success:
                self._open()
                return
            self._trial_successes += 1
            if self._trial_successes >= self.policy.breaker_half_open_calls:
                self.state = BreakerState.CLOSED
                self._outcomes.clear()
            return
        self._outcomes.append(success)
        while len(self._outcomes) > self.policy.breaker_window:
            self._outcomes.popleft()
        calls = len(self._outcomes)
        if calls >= self.policy.breaker_minimum_calls:
            failures = calls - sum(self._outcomes)
            if failures / calls >= self.policy.breaker_failure_rate:
                self._open()

    def abandon(self) -> None:
        """A call that was allowed ended without an outcome (cancelled, or refused by the
        bulkhead): give its half-open trial back, or the breaker would wait for it forever."""
        if self.state is BreakerState.HALF_OPEN and self._trials > 0:
            self._trials -= 1

    def _open(self) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = self._now()
        self._outcomes.clear()


@dataclass
class RetryBudget:
    """Each call earns ``ratio`` of a retry; a retry spends one. Bounded so a quiet period cannot
    save up for a storm later."""

    ratio: float
    cap: float = 10.0
    _tokens: float = 1.0

    def earn(self) -> None:
        self._tokens = min(self.cap, self._tokens + self.ratio)

    def spend(self) -> bool:
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class PeerGuard:
    """Breaker, bulkhead and retry budget of one peer, shared by every call to it."""

    def __init__(self, service: str, peer: str, policy: ResiliencePolicy) -> None:
        self.service = service
        self.peer = peer
        self.policy = policy
        self.breaker = CircuitBreaker(policy)
        self.budget = RetryBudget(policy.retry_budget_ratio)
        self._in_flight = 0

    def try_enter(self) -> bool:
        """Bulkhead: a peer that stopped answering may hold at most ``max_concurrency`` calls;
        beyond that callers fail fast instead of piling up waiting on it."""
        if self._in_flight >= self.policy.max_concurrency:
            return False
        self._in_flight += 1
        return True

    def leave(self) -> None:
        self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)]."""
        ceiling = min(
            self.policy.backoff_max_seconds, self.policy.backoff_base_seconds * 2**attempt
        )
        return random.uniform(0, ceiling)
