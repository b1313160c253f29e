"""Open-loop load: requests start at Poisson arrival times whatever the server does, and each
latency is measured from the request's intended start, so time spent queueing (in the server or
in this client) is counted instead of hidden (coordinated omission). A closed-loop mode with the
same client is here too, to find the peak this client can drive.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

# The fault suite's nearest-rank percentile: bench.py puts the repository on sys.path first.
from tests.faults.harness import percentile

# One request: given the session, answers the HTTP status (0 when no answer came).
Request = Callable[[aiohttp.ClientSession], Awaitable[int]]
CLIENT_TIMEOUT_SECONDS = 10.0


@dataclass
class Result:
    offered_rps: float  # what was asked for (open loop) or 0 (closed loop)
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    ok_latencies: list[float] = field(default_factory=list)  # seconds, 2xx answers only
    all_latencies: list[float] = field(default_factory=list)
    # How late this client started requests against their schedule: if it is large, the
    # client, not the server, was the bottleneck and the run says little.
    send_lag_p99: float = 0.0
    sent: int = 0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def goodput(self) -> float:
        return self.ok / self.seconds

    @property
    def achieved_rps(self) -> float:
        return self.sent / self.seconds

    def p(self, q: float, *, admitted: bool = True) -> float:
        """Latency percentile in milliseconds, of 2xx answers (``admitted``) or of all."""
        return percentile(self.ok_latencies if admitted else self.all_latencies, q) * 1000

    def summary(self) -> dict[str, object]:
        return {
            "offered_rps": round(self.offered_rps, 1),
            "achieved_rps": round(self.achieved_rps, 1),
            "goodput_rps": round(self.goodput, 1),
            "p50_ms": round(self.p(0.5), 2),
            "p99_ms": round(self.p(0.99), 2),
            "p99_all_ms": round(self.p(0.99, admitted=False), 2),
            "send_lag_p99_ms": round(self.send_lag_p99 * 1000, 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


def new_session(max_connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_SECONDS)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


def get(url: str) -> Request:
    async def call(session: aiohttp.ClientSession) -> int:
        async with session.get(url) as resp:
            await resp.read()
            return resp.status

    return call


async def _timed(session: aiohttp.ClientSession, request: Request) -> int:
    try:
        return await request(session)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return 0


async def open_loop(
    session: aiohttp.ClientSession,
    request: Request,
    *,
    rate: float,
    seconds: float,
    seed: int = 1,
) -> Result:
    """Poisson arrivals at ``rate`` per second for ``seconds``; waits for the stragglers (each
    bounded by the client timeout) before it returns."""
    rng = random.Random(seed)
    result = Result(offered_rps=rate, seconds=seconds)
    lags: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(intended: float) -> None:
        # Lag is taken when the request really starts: tasks created in a burst start late.
        lags.append(max(0.0, time.perf_counter() - intended))
        status = await _timed(session, request)
        latency = time.perf_counter() - intended
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.all_latencies.append(latency)
        if 200 <= status < 300:
            result.ok_latencies.append(latency)

    start = time.perf_counter() + 0.05
    due = start
    end = start + seconds
    while True:
        due += rng.expovariate(rate)
        if due >= end:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    result.sent = len(tasks)
    await asyncio.gather(*tasks)
    result.send_lag_p99 = percentile(lags, 0.99)
    return result


async def closed_loop(
    session: aiohttp.ClientSession, request: Request, *, concurrency: int, seconds: float
) -> Result:
    """``concurrency`` callers, each sending its next request when the last is answered."""
    result = Result(offered_rps=0.0, seconds=seconds)
    end = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < end:
            started = time.perf_counter()
            status = await _timed(session, request)
            latency = time.perf_counter() - started
            result.sent += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.all_latencies.append(latency)
            if 200 <= status < 300:
                result.ok_latencies.append(latency)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return result
