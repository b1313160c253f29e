"""A request's deadline, through real services: each hop is a FastAPI app with the kit's
middleware under a real uvicorn on loopback, calling the next one with a ServiceClient."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import pytest
from fastapi import FastAPI, Request
from prometheus_client import REGISTRY
from shopkit import deadline as deadlines
from shopkit.discovery import StaticDiscovery
from shopkit.errors import install_problem_handlers
from shopkit.http import DeadlineExceeded, PeerUnavailable, ServiceClient, new_client_session
from shopkit.observability import RequestContextMiddleware
from shopkit.resilience import BreakerState, PeerGuard, ResiliencePolicy
from shopkit.testing import serve_app

BUDGET = deadlines.BUDGET_HEADER


class Next(ServiceClient):
    peer = "next"


@dataclass
class Hop:
    """One service of the chain, and what it saw."""

    name: str
    url: str = ""
    budgets: list[str | None] = field(default_factory=list)
    hits: int = 0
    guard: PeerGuard | None = None


def _hop_app(hop: Hop, session: aiohttp.ClientSession, next_url: str | None) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=hop.name)
    hop.guard = PeerGuard(hop.name, "next", ResiliencePolicy(breaker_minimum_calls=1))
    client = (
        Next(
            session,
            StaticDiscovery({"next": next_url}),
            timeout=5.0,
            internal_token="t",
            guard=hop.guard,
        )
        if next_url
        else None
    )

    @app.api_route("/chain", methods=["GET", "POST"])
    async def chain(
        request: Request, pause: float = 0.0, sleep_next: float = 0.0, timeout: float = 0.0
    ) -> dict[str, Any]:
        hop.hits += 1
        hop.budgets.append(request.headers.get(BUDGET))
        deadline = deadlines.current()
        seen: dict[str, Any] = {
            "budget": request.headers.get(BUDGET),
            "remaining": deadline.remaining() if deadline else None,
        }
        if pause:
            await asyncio.sleep(pause)
        if client is not None:
            query = {"pause": str(sleep_next)} if sleep_next else None
            answer = await client.request(
                request.method, "/chain", params=query, timeout=timeout or None
            )
            seen["next"] = answer.body
        return seen

    @app.post("/saga")
    async def saga(pause: float = 0.0) -> dict[str, Any]:
        """A write, then a pause past the deadline, then a read that must still go out."""
        assert client is not None
        await client.request("POST", "/chain")
        await asyncio.sleep(pause)
        after = await client.request("GET", "/chain")
        return {"after": after.body}

    @app.get("/spawned")
    async def spawned() -> dict[str, Any]:
        async def look() -> bool:
            return deadlines.current() is not None

        inherited = await asyncio.create_task(look())
        detached = await asyncio.create_task(look(), context=deadlines.detached_context())
        return {"inherited": inherited, "detached": detached}

    return app


@contextlib.asynccontextmanager
async def _chain(*names: str) -> AsyncIterator[list[Hop]]:
    """Services ``names[0] -> names[1] -> ...``, started from the last one."""
    hops = [Hop(name) for name in names]
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(new_client_session())
        next_url: str | None = None
        for hop in reversed(hops):
            hop.url = await stack.enter_async_context(serve_app(_hop_app(hop, session, next_url)))
            next_url = hop.url
        yield hops


def _calls(service: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "shop_peer_calls_total", {"service": service, "peer": "next", "outcome": outcome}
    )
    return value or 0.0


async def test_the_budget_shrinks_hop_by_hop() -> None:
    async with _chain("dl-a", "dl-b", "dl-c") as (a, b, c), httpx.AsyncClient() as http:
        resp = await http.get(
            a.url + "/chain", params={"pause": "0.2", "sleep_next": "0.2"}, headers={BUDGET: "3000"}
        )
        assert resp.status_code == 200, resp.text
        at_a = resp.json()
        at_b = at_a["next"]
        at_c = at_b["next"]
        assert at_a["budget"] == "3000"
        # Each hop forwards what is left after its own work (and a small reserve to answer in).
        assert b.budgets == [at_b["budget"]] and c.budgets == [at_c["budget"]]
        budget_b, budget_c = int(at_b["budget"]), int(at_c["budget"])
        assert 2000 < budget_b <= 3000 - 200, budget_b
        assert 1000 < budget_c <= budget_b - 200, budget_c
        assert 0 < at_c["remaining"] < budget_c / 1000


async def test_without_the_header_nothing_is_bounded_or_forwarded() -> None:
    async with _chain("dl-d", "dl-e") as (d, e), httpx.AsyncClient() as http:
        resp = await http.get(d.url + "/chain")
        assert resp.status_code == 200
        assert resp.json()["remaining"] is None
        assert e.budgets == [None]


async def test_a_call_with_no_budget_left_is_not_sent() -> None:
    async with _chain("dl-f", "dl-g") as (f, g), httpx.AsyncClient() as http:
        refused_before = _calls("dl-f", "deadline-exceeded")
        # 150 ms of budget, 300 ms of work before the call: nothing is left for it.
        resp = await http.get(f.url + "/chain", params={"pause": "0.3"}, headers={BUDGET: "150"})
        assert resp.status_code == 503
        assert resp.headers["content-type"] == "application/problem+json"
        problem = resp.json()
        assert problem["type"].endswith("/deadline-exceeded"), problem
        assert resp.headers["retry-after"]
        assert g.hits == 0, "the call was sent although no time was left"
        assert _calls("dl-f", "deadline-exceeded") == refused_before + 1
        # The peer did nothing wrong: its breaker heard nothing.
        assert f.guard is not None and f.guard.breaker.state is BreakerState.CLOSED

        resp = await http.get(f.url + "/chain", headers={BUDGET: "0"})
        assert resp.status_code == 503
        assert g.hits == 0


async def test_the_per_call_timeout_still_applies_under_a_larger_budget() -> None:
    async with _chain("dl-h", "dl-i") as (h, i), httpx.AsyncClient(timeout=15) as http:
        started = time.monotonic()
        resp = await http.get(
            h.url + "/chain",
            params={"timeout": "0.3", "sleep_next": "2"},
            headers={BUDGET: "8000"},
        )
        elapsed = time.monotonic() - started
        assert resp.status_code == 503
        problem = resp.json()
        assert problem["type"].endswith("/dependency-unavailable"), problem
        assert "timed out" in problem["detail"]
        assert elapsed < 1.5, elapsed  # the 0.3 s timeout, not the 8 s budget
        # The peer is told the shorter of the two: how long its answer is waited for.
        assert i.budgets == ["300"]


async def test_a_budget_shorter_than_the_timeout_ends_the_call() -> None:
    async with _chain("dl-j", "dl-k") as (j, k), httpx.AsyncClient(timeout=15) as http:
        cut_before = _calls("dl-j", "deadline-cut")
        started = time.monotonic()
        resp = await http.get(j.url + "/chain", params={"sleep_next": "3"}, headers={BUDGET: "600"})
        elapsed = time.monotonic() - started
        assert resp.status_code == 503
        assert resp.json()["type"].endswith("/deadline-exceeded")
        assert elapsed < 2.0, elapsed  # the 0.6 s budget, not the 5 s timeout nor the 3 s sleep
        assert k.hits == 1 and k.budgets[0] is not None
        assert 400 < int(k.budgets[0]) < 600
        assert _calls("dl-j", "deadline-cut") == cut_before + 1
        assert j.guard is not None and j.guard.breaker.state is BreakerState.CLOSED


async def test_after_a_write_the_request_sees_its_effects_through() -> None:
    async with _chain("dl-l", "dl-m") as (l_, m), httpx.AsyncClient(timeout=15) as http:
        resp = await http.post(l_.url + "/saga", params={"pause": "0.5"}, headers={BUDGET: "300"})
        assert resp.status_code == 200, resp.text
        # The write was bounded by the deadline; the read after it, past the deadline, was not.
        assert m.hits == 2
        assert m.budgets[0] is not None and int(m.budgets[0]) <= 300
        assert m.budgets[1] is None


async def test_tasks_inherit_the_deadline_unless_detached() -> None:
    async with _chain("dl-n") as (n,), httpx.AsyncClient() as http:
        resp = await http.get(n.url + "/spawned", headers={BUDGET: "5000"})
        assert resp.json() == {"inherited": True, "detached": False}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1500", 1500),
        (" 250 ", 250),
        ("0", 0),
        ("999999999", deadlines.MAX_BUDGET_MS),
        ("99999999999999999999", None),
        ("-5", None),
        ("1e3", None),
        ("12.5", None),
        ("", None),
        ("٣٠٠", None),  # Arabic-Indic digits: str.isdigit() says yes, int() would take them
        (None, None),
    ],
)
def test_budget_header_values(value: str | None, expected: int | None) -> None:
    assert deadlines.parse_budget_ms(value) == expected


async def test_malformed_budgets_are_ignored_never_a_500() -> None:
    async with _chain("dl-o", "dl-p") as (o, p), httpx.AsyncClient() as http:
        for value in ("soon", "-1", "1e9", "9" * 40, "+5", "100000000000"):
            resp = await http.get(o.url + "/chain", headers={BUDGET: value})
            assert resp.status_code == 200, (value, resp.status_code)
            assert resp.json()["remaining"] is None
        assert p.budgets == [None] * 6
        resp = await http.get(o.url + "/chain", headers={BUDGET: "999999999"})
        assert resp.status_code == 200
        assert resp.json()["remaining"] <= deadlines.MAX_BUDGET_MS / 1000


async def test_a_client_without_a_guard_is_bounded_too() -> None:
    async with _chain("dl-q") as (q,), new_client_session() as session:
        client = Next(session, StaticDiscovery({"next": q.url}), timeout=5, internal_token="t")
        token = deadlines.enter(deadlines.Deadline.after(0.0))
        try:
            with pytest.raises(DeadlineExceeded) as caught:
                await client.request("GET", "/chain")
        finally:
            deadlines.leave(token)
        assert isinstance(caught.value, PeerUnavailable)
        assert q.hits == 0
        assert (await client.request("GET", "/chain")).status == 200
