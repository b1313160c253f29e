"""Breaker, bulkhead and retry budget, on their own and through a real HTTP peer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from shopkit.discovery import StaticDiscovery
from shopkit.http import PeerUnavailable, ServiceClient, new_client_session
from shopkit.resilience import (
    BreakerState,
    CircuitBreaker,
    PeerGuard,
    ResiliencePolicy,
    RetryBudget,
)
from shopkit.testing import free_port

POLICY = ResiliencePolicy(
    breaker_window=4,
    breaker_minimum_calls=4,
    breaker_failure_rate=0.5,
    breaker_open_seconds=10,
    breaker_half_open_calls=2,
    backoff_base_seconds=0.001,
    backoff_max_seconds=0.002,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_on_failure_rate_and_recovers_through_half_open() -> None:
    clock = Clock()
    breaker = CircuitBreaker(POLICY, clock)
    for success in (True, False, True):
        assert breaker.allow()
        breaker.record(success=success)
    assert breaker.state is BreakerState.CLOSED  # 3 calls: below the minimum
    breaker.record(success=False)  # 2 of 4 failed: 50 %
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow()  # first trial
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # second trial
    assert not breaker.allow()  # no more than the trial calls
    breaker.record(success=True)
    breaker.record(success=True)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_refusing_says_whether_calls_fail_fast_without_taking_a_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(POLICY, clock)
    assert not breaker.refusing()
    for _ in range(4):
        breaker.record(success=False)
    assert breaker.refusing()
    clock.now += 10.1
    assert not breaker.refusing()  # the open period is over: a trial may go
    assert breaker.state is BreakerState.OPEN  # asking moved nothing
    assert breaker.allow() and breaker.allow() and not breaker.allow()


def test_a_failed_trial_reopens_the_breaker() -> None:
    clock = Clock()
    breaker = CircuitBreaker(POLICY, clock)
    for _ in range(4):
        breaker.record(success=False)
    clock.now += 11
    assert breaker.allow()
    breaker.record(success=False)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_an_abandoned_trial_is_given_back() -> None:
    clock = Clock()
    breaker = CircuitBreaker(POLICY, clock)
    for _ in range(4):
        breaker.record(success=False)
    clock.now += 11
    assert breaker.allow()
    assert breaker.allow()
    assert not breaker.allow()
    breaker.abandon()  # one trial was cancelled before it had an answer
    assert breaker.allow()


def test_retry_budget_is_a_fraction_of_calls() -> None:
    budget = RetryBudget(ratio=0.2)
    granted = 0
    for _ in range(100):
        budget.earn()
        granted += budget.spend()
    assert 19 <= granted <= 21  # one saved at the start, then one per five calls


@pytest.fixture
async def peer() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A real HTTP peer whose answers the test chooses: /fail answers 500, /ok 200."""
    hits = {"fail": 0, "ok": 0}

    async def fail(_: web.Request) -> web.Response:
        hits["fail"] += 1
        return web.json_response({"error": True}, status=500)

    async def ok(_: web.Request) -> web.Response:
        hits["ok"] += 1
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/fail", fail)
    app.router.add_route("*", "/ok", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()


class Peer(ServiceClient):
    peer = "peer"


async def test_reads_are_retried_writes_are_not_and_the_breaker_fails_fast(
    peer: tuple[str, dict[str, int]],
) -> None:
    url, hits = peer
    guard = PeerGuard("test", "peer", POLICY.model_copy(update={"breaker_minimum_calls": 20}))
    async with new_client_session() as session:
        client = Peer(
            session, StaticDiscovery({"peer": url}), timeout=2, internal_token="t", guard=guard
        )
        with pytest.raises(PeerUnavailable):
            await client.request("GET", "/fail")
        assert hits["fail"] == 2  # one retry: the budget starts with one token
        with pytest.raises(PeerUnavailable):
            await client.request("POST", "/fail")
        assert hits["fail"] == 3  # a plain write is never repeated

        guard = PeerGuard("test", "peer", POLICY)
        client = Peer(
            session, StaticDiscovery({"peer": url}), timeout=2, internal_token="t", guard=guard
        )
        for _ in range(4):
            with pytest.raises(PeerUnavailable):
                await client.request("POST", "/fail")
        assert guard.breaker.state is BreakerState.OPEN
        assert client.failing_fast()
        before = hits["ok"]
        with pytest.raises(PeerUnavailable, match="circuit open"):
            await client.request("GET", "/ok")
        assert hits["ok"] == before  # failed fast, the peer was not called
        assert guard.in_flight == 0


async def test_bulkhead_rejects_beyond_its_limit(peer: tuple[str, dict[str, int]]) -> None:
    url, _ = peer
    guard = PeerGuard("test", "peer", POLICY.model_copy(update={"max_concurrency": 1}))
    assert guard.try_enter()
    async with new_client_session() as session:
        client = Peer(
            session, StaticDiscovery({"peer": url}), timeout=2, internal_token="t", guard=guard
        )
        with pytest.raises(PeerUnavailable, match="in flight"):
            await client.request("GET", "/ok")
        guard.leave()
        assert (await client.request("GET", "/ok")).status == 200
