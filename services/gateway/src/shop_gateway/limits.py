"""Per-client token buckets and the global in-flight bound.

Memory stays bounded: a bucket idle long enough to have refilled completely is the same as no
bucket, so sweeps drop those; if a flood of distinct clients still exceeds the cap, the oldest
buckets go first (those clients merely get a fresh burst).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = rate > 0 and burst > 0
        self._rate = rate
        self._burst = float(burst)
        self._max_clients = max_clients
        self._clock = clock
        # key -> [tokens, last refill time]; lists are mutated in place to avoid reallocation.
        self._buckets: dict[str, list[float]] = {}
        self._refill_seconds = burst / rate if self.enabled else 0.0
        self._sweep_every = max(1.0, min(self._refill_seconds, 60.0))
        self._next_sweep = clock() + self._sweep_every

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str) -> float:
        """0.0 when the request may pass, else the seconds until a token is available."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if now >= self._next_sweep or len(self._buckets) >= self._max_clients:
                self._sweep(now)
            self._buckets[key] = [self._burst - 1.0, now]
            return 0.0
        tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self._rate

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self._sweep_every
        horizon = now - self._refill_seconds
        idle = [key for key, (_, last) in self._buckets.items() if last <= horizon]
        for key in idle:
            del self._buckets[key]
        # Leave a tenth of the room free so a flood of new clients does not sweep per request.
        target = self._max_clients - max(1, self._max_clients // 10)
        excess = len(self._buckets) - target
        if excess > 0:
            for key in list(self._buckets)[:excess]:
                del self._buckets[key]


def retry_after(seconds: float) -> str:
    """Whole seconds, at least 1, as Retry-After wants."""
    return str(max(1, math.ceil(seconds)))
