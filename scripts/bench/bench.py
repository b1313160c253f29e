"""``make bench``: PERFORMANCE.md's P1-P6 as ratios of two configurations measured side by side.

Each goal interleaves its configurations (A B A B A B), takes the median of the per-round
ratios and writes the table, the machine and the commands to docs/benchmarks.md. It is a
benchmark, not a test: it never fails on speed. It exits non-zero only when the tooling itself
breaks (a tool missing, a platform that does not start, a load generator that fails).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))  # the cross-service suite's helpers (tests.e2e, tests.faults)

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import openloop  # noqa: E402
import tools  # noqa: E402
import uvloop  # noqa: E402
from shopkit.launcher import SERVICES, PlatformConfig, free_port  # noqa: E402

from tests.e2e.invariants import check_invariants  # noqa: E402
from tests.e2e.support import ADMIN, INTERNAL_TOKEN, RunningPlatform  # noqa: E402
from tests.faults.toxiproxy import (  # noqa: E402
    Toxiproxy,
    ToxiproxyServer,
    build_toxiproxy,
    timeout,
)

PROCESSES = (*SERVICES, "gateway")
CONNECTIONS = 10  # PERFORMANCE.md's closed-loop figure for P1 and P2
PRODUCT_STOCK = 100_000_000  # never the limit of a checkout run
CHECKOUT_SETTLE_SECONDS = 2.0
KEYS_WAIT_SECONDS = 45.0
AUTH_STREAK = 20


@dataclass(frozen=True)
class Profile:
    name: str
    seconds: float  # one measured run
    warmup: float
    rounds: int
    customers: int  # per platform that takes checkouts


FULL = Profile("full", seconds=10, warmup=3, rounds=3, customers=64)
QUICK = Profile("quick", seconds=2, warmup=1, rounds=3, customers=32)


@dataclass
class Row:
    id: str
    goal: str
    target: str
    measured: str = "not measured"
    raw: str = ""
    command: str = ""
    details: list[str] = field(default_factory=list)


def rows() -> dict[str, Row]:
    goals = [
        Row("P1", "gateway rps ÷ direct rps (10 connections, `GET /api/v1/products/{id}`); "
            "added p50 at 1 connection", "≥ 0.75 and ≤ 0.5 ms added"),
        Row("P2", "full checkout (gateway, saga, broker) ÷ FastAPI hello-world rps, same "
            "worker count", "≥ 0.08 (stretch 0.10)"),
        Row("P3", "2 workers ÷ (2 x 1 pinned worker), reads and checkout",
            "≥ 0.8 reads, ≥ 0.7 checkout"),
        Row("P4", "checkout rps with metrics + tracing (10 % sampling) ÷ without", "≥ 0.8"),
        Row("P5", "goodput at 2x peak (open loop) ÷ goodput at peak; admitted p99 at 2x ÷ "
            "p99 at half load", "≥ 0.9; ≤ 3"),
        Row("P6", "catalog p99 while payment is failing ÷ without the fault", "≤ 1.5"),
        Row("P7", "footprint: resource requests of the platform in the kind values",
            "≤ 1.5 CPU, ≤ 1.5 GiB", measured="not measured here: summed from the rendered "
            "chart by the Kubernetes issue"),
        Row("P8", "cold start: `make up` to all services ready", "≤ 15 s",
            measured="measured by the launcher (`make up` prints \"ready in N s\")"),
    ]  # fmt: skip
    return {row.id: row for row in goals}


def median(values: Sequence[float]) -> float:
    """Of the rounds that measured something (NaN marks one that did not)."""
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else float("nan")


def ratio(a: float, b: float) -> float:
    """a / b; NaN when nothing was measured on the b side (shown as such, not a crash)."""
    return a / b if b else float("nan")


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


# The platform under test


@dataclass
class Shop:
    """A running platform and what the bench made in it."""

    name: str
    running: RunningPlatform
    product_id: str = ""
    tokens: list[str] = field(default_factory=list)
    tokens_file: Path | None = None
    started_seconds: float = 0.0

    @property
    def gateway(self) -> str:
        return self.running.gateway

    def product_path(self) -> str:
        return f"/api/v1/products/{self.product_id}"


def platform_config(
    workdir: Path,
    name: str,
    *,
    workers: int = 1,
    settings: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> PlatformConfig:
    """Every process gets ``settings`` under its own prefix and ``env`` as is."""
    extra: dict[str, dict[str, str]] = {}
    for service in PROCESSES:
        prefix = f"SWEETSLICE_{service.upper()}_"
        values = {"WORKERS": str(workers), **(settings or {})}
        extra[service] = {prefix + k: v for k, v in values.items()} | (env or {})
    # One client address and a few customers drive everything: limits would measure themselves.
    extra["gateway"] |= {
        "SWEETSLICE_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
        "SWEETSLICE_GATEWAY_RATE_LIMIT_BURST": "1000000",
    }
    # P6 turns the payment fault off between runs: a short open period lets the breaker close.
    # Orders failed as charge-unknown are watched for late charges for 15 s instead of 120 s,
    # so the invariants can be checked (drained) before the bench moves on.
    extra["order"] |= {
        "SWEETSLICE_ORDER_RESILIENCE__BREAKER_OPEN_SECONDS": "1",
        "SWEETSLICE_ORDER_RESILIENCE__BREAKER_HALF_OPEN_CALLS": "1",
        "SWEETSLICE_ORDER_CHARGE_SETTLE_SECONDS": "15",
    }
    return PlatformConfig.ephemeral(workdir / name, admin=ADMIN, extra_env=extra)


def launch(config: PlatformConfig, name: str, customers: int, *, cpus: str | None = None) -> Shop:
    running = RunningPlatform(config)
    if cpus:
        for child in running.platform.children.values():
            child.argv = tools.pinned(cpus, child.argv)
    print(f"[bench] starting platform {name!r}", flush=True)
    try:
        seconds = running.start()
    except RuntimeError as exc:
        raise tools.ToolError(str(exc)) from exc
    shop = Shop(name, running, started_seconds=seconds)
    try:
        asyncio.run(_prepare(shop, customers))
    except BaseException:
        running.stop()
        raise
    tokens_file = config.data_dir / "bench-tokens.txt"
    tokens_file.write_text("\n".join(shop.tokens) + "\n")
    shop.tokens_file = tokens_file
    print(f"[bench] platform {name!r} ready in {seconds:.1f}s", flush=True)
    return shop


async def _prepare(shop: Shop, customers: int) -> None:
    """A product with stock no run exhausts, and customers with tokens."""
    async with aiohttp.ClientSession(base_url=shop.gateway) as http:

        async def call(method: str, path: str, body: Any, headers: Any = None) -> Any:
            # A worker whose first JWKS fetch failed (its peer was still starting) answers 503
            # until its refetch interval has passed, even once /readyz, answered by another
            # worker, is green: wait that out rather than fail the run.
            deadline = time.monotonic() + KEYS_WAIT_SECONDS
            while True:
                async with http.request(method, path, json=body, headers=headers) as resp:
                    data = await resp.json(content_type=None)
                    if resp.status == 503 and time.monotonic() < deadline:
                        await asyncio.sleep(1)
                        continue
                    if resp.status >= 300:
                        raise tools.ToolError(f"{method} {path}: {resp.status} {data}")
                    return data

        login = {"email": ADMIN[0], "password": ADMIN[1]}
        admin_token = (await call("POST", "/api/v1/auth/login", login))["access_token"]
        sku = f"BENCH-{uuid.uuid4().hex[:10]}"
        product = await call(
            "POST",
            "/api/v1/products",
            {
                "sku": sku,
                "name": f"Bench Loaf {sku}",
                "description": "Baked by make bench",
                "category": "bench",
                "price": {"amount": 350, "currency": "USD"},
                "available": PRODUCT_STOCK,
            },
            {"Authorization": f"Bearer {admin_token}"},
        )
        shop.product_id = product["id"]
        gate = asyncio.Semaphore(4)

        async def customer(i: int) -> str:
            email = f"bench-{i}-{uuid.uuid4().hex[:8]}@example.com"
            password = "bench password 123"  # noqa: S105 - throw-away accounts
            async with gate:
                body = {"email": email, "password": password, "name": f"Bench {i}"}
                await call("POST", "/api/v1/auth/register", body)
                login = {"email": email, "password": password}
                token: str = (await call("POST", "/api/v1/auth/login", login))["access_token"]
                return token

        shop.tokens = list(await asyncio.gather(*(customer(i) for i in range(customers))))

    # Every worker must check tokens before a run starts (see KEYS_WAIT_SECONDS): fresh
    # connections land on any worker, so wait for a streak of them to pass.
    deadline = time.monotonic() + KEYS_WAIT_SECONDS
    streak = 0
    while streak < AUTH_STREAK:
        async with (
            aiohttp.ClientSession(base_url=shop.gateway) as fresh,
            fresh.get("/api/v1/cart", headers={"Authorization": f"Bearer {shop.tokens[0]}"}) as r,
        ):
            streak = streak + 1 if r.status == 200 else 0
        if streak == 0:
            if time.monotonic() > deadline:
                raise tools.ToolError(f"{shop.name}: the gateway still refuses tokens ({r.status})")
            await asyncio.sleep(1)


async def _invariants(shop: Shop) -> str:
    async with httpx.AsyncClient(headers={"X-Internal-Token": INTERNAL_TOKEN}, timeout=30) as c:
        try:
            # Failed orders still being compensated (a late charge to refund) are waited for too:
            # the order service's recovery settles them within its saga timeout.
            counts = await check_invariants(shop.running, c, settle_seconds=90, drain_failed=True)
        except AssertionError as exc:
            return f"VIOLATED: {str(exc)[:300]}"
    return f"hold ({counts['orders']} orders, {counts['confirmed']} confirmed)"


def invariants(shop: Shop) -> str:
    verdict = asyncio.run(_invariants(shop))
    if verdict.startswith("VIOLATED"):
        print(f"[bench] platform {shop.name!r}: invariants {verdict}", file=sys.stderr)
    return verdict


@contextlib.contextmanager
def platforms(*shops: Callable[[], Shop]) -> Iterator[list[Shop]]:
    started: list[Shop] = []
    try:
        for make in shops:
            started.append(make())
        yield started
    finally:
        for shop in started:
            shop.running.stop()


# Runs


class Bench:
    def __init__(self, profile: Profile, workdir: Path, tool_paths: dict[str, str]) -> None:
        self.profile = profile
        self.workdir = workdir
        self.tools = tool_paths
        self.rows = rows()
        self.peak_reads: float | None = None
        self.start_seconds: list[float] = []
        self.shown = {str(workdir): "$BENCH_TMP"}

    def wrk(self, url: str, **kwargs: Any) -> tools.WrkRun:
        kwargs.setdefault("connections", CONNECTIONS)
        kwargs.setdefault("seconds", self.profile.seconds)
        return tools.wrk(url, shown=self.shown, **kwargs)

    def checkout_args(self, shop: Shop) -> list[str]:
        assert shop.tokens_file is not None
        # One wrk thread. Its connections bound the requests in flight, so a lag of as many
        # fills between a cart's fill and its checkout would do if answers came in order; they
        # do not, so the lag is up to twice that, as far as the customers allow.
        lag = max(CONNECTIONS, min(2 * CONNECTIONS, (len(shop.tokens) - 2) // 2))
        return [str(shop.tokens_file), shop.product_id, "1", str(lag)]

    def shop(self, name: str, *, cpus: str | None = None, **config: Any) -> Callable[[], Shop]:
        def make() -> Shop:
            shop = launch(
                platform_config(self.workdir, name, **config),
                name,
                self.profile.customers,
                cpus=cpus,
            )
            self.start_seconds.append(shop.started_seconds)
            return shop

        return make

    def rounds(self, arms: dict[str, Callable[[], Any]]) -> list[dict[str, Any]]:
        """A warm-up of each arm, then the arms in turn, ``rounds`` times."""
        for name, arm in arms.items():
            print(f"[bench]   warm-up {name}", flush=True)
            arm_warm = getattr(arm, "warm", None)
            (arm_warm or arm)()
        results = []
        for index in range(self.profile.rounds):
            row: dict[str, Any] = {}
            for name, arm in arms.items():
                row[name] = arm()
                print(f"[bench]   round {index + 1} {name}: {_short(row[name])}", flush=True)
            results.append(row)
        return results

    def wrk_arm(self, url: str, **kwargs: Any) -> Callable[[], tools.WrkRun]:
        def once(seconds: float) -> tools.WrkRun:
            result = self.wrk(url, **{**kwargs, "seconds": seconds})
            if kwargs.get("script") == "checkout.lua":
                # wrk stops with checkouts in flight; they finish (and empty their carts) on
                # the server after it, and must not race the next run's fills.
                time.sleep(CHECKOUT_SETTLE_SECONDS)
            return result

        seconds = kwargs.pop("seconds", self.profile.seconds)

        def run() -> tools.WrkRun:
            return once(seconds)

        run.warm = lambda: once(self.profile.warmup)  # type: ignore[attr-defined]
        return run

    # P1, P2, P5 share the default platform.

    def main_platform(self, only: set[str]) -> None:
        wanted = {"P1", "P2", "P5"} & only
        if not wanted:
            return
        try:
            with platforms(self.shop("main")) as [main]:
                for goal, run in (("P1", self.p1), ("P2", self.p2), ("P5", self.p5)):
                    if goal in wanted:
                        self.guarded(goal, lambda run=run: run(main))  # type: ignore[misc]
        except Exception as exc:
            traceback.print_exc()
            for goal in sorted(wanted):
                if self.rows[goal].measured == "not measured":
                    self.rows[goal].measured = f"FAILED: {type(exc).__name__}: {str(exc)[:200]}"
                    self.broken.append(goal)

    def p1(self, main: Shop) -> None:
        row = self.rows["P1"]
        product_port = main.running.config.ports["product"]
        path = main.product_path()
        with tools.nginx(
            self.tools["nginx"], self.workdir / "nginx", free_port(), product_port
        ) as nginx:
            targets = {
                "direct": main.running.url("product") + path,
                "gateway": main.gateway + path,
                "nginx": nginx + path,
            }
            many = self.rounds({k: self.wrk_arm(u) for k, u in targets.items()})
            one = self.rounds(
                {k: self.wrk_arm(u, connections=1, seconds=max(1.0, self.profile.seconds / 2))
                 for k, u in targets.items()}
            )  # fmt: skip
        gw = [ratio(r["gateway"].rps, r["direct"].rps) for r in many]
        ng = [ratio(r["nginx"].rps, r["direct"].rps) for r in many]
        added = [r["gateway"].ms("p50_ms") - r["direct"].ms("p50_ms") for r in one]
        added_ng = [r["nginx"].ms("p50_ms") - r["direct"].ms("p50_ms") for r in one]
        row.measured = (
            f"**{fmt(median(gw))}**, {median(added):+.3f} ms p50 "
            f"(nginx floor: {fmt(median(ng))}, {median(added_ng):+.3f} ms)"
        )
        row.raw = (
            "rps direct / gateway / nginx: "
            + " / ".join(fmt(median([r[k].rps for r in many]), 0) for k in targets)
            + "; p50 ms at 1 conn: "
            + " / ".join(fmt(median([r[k].ms("p50_ms") for r in one]), 3) for k in targets)
        )
        row.command = f"`{many[0]['gateway'].command}` (and the same at `-c1`, direct, nginx)"
        row.details += [
            "per-round gateway ratio: " + ", ".join(fmt(x) for x in gw),
            "per-round nginx ratio: " + ", ".join(fmt(x) for x in ng),
            "per-round added p50 (ms): " + ", ".join(fmt(x, 3) for x in added),
            "nginx: one worker process, keep-alive upstream pool of 64, access log off",
        ]

    def p2(self, main: Shop) -> None:
        row = self.rows["P2"]
        hello_port = free_port()
        log = self.workdir / "hello.log"
        with (
            platforms(self.shop("fullsync", settings={"SQLITE_SYNCHRONOUS": "FULL"})) as [full],
            tools.python_server("hello.py", hello_port, log) as hello,
        ):
            arms = {
                "checkout": self.wrk_arm(
                    main.gateway, script="checkout.lua", args=self.checkout_args(main)
                ),
                "hello": self.wrk_arm(hello + "/hello"),
                "checkout-FULL": self.wrk_arm(
                    full.gateway, script="checkout.lua", args=self.checkout_args(full)
                ),
            }
            results = self.rounds(arms)
            full_invariants = invariants(full)
        main_invariants = invariants(main)

        def checkouts(run: tools.WrkRun) -> float:
            return run.counted("201") / float(run.data["seconds"])  # type: ignore[arg-type]

        ratios = [ratio(checkouts(r["checkout"]), r["hello"].rps) for r in results]
        full_ratios = [
            ratio(checkouts(r["checkout-FULL"]), checkouts(r["checkout"])) for r in results
        ]
        failed = sum(
            r[k].counted("4xx") + r[k].counted("5xx")
            for r in results
            for k in ("checkout", "checkout-FULL")
        )
        row.measured = f"**{fmt(median(ratios), 3)}**"
        row.raw = (
            f"{fmt(median([checkouts(r['checkout']) for r in results]), 1)} checkouts/s vs "
            f"{fmt(median([r['hello'].rps for r in results]), 0)} hello rps; "
            f"synchronous=FULL: {fmt(median([checkouts(r['checkout-FULL']) for r in results]), 1)}"
            f" checkouts/s ({fmt(median(full_ratios))} of NORMAL)"
        )
        row.command = f"`{results[0]['checkout'].command}` vs `{results[0]['hello'].command}`"
        row.details += [
            "per-round ratio: " + ", ".join(fmt(x, 3) for x in ratios),
            f"non-2xx answers during the checkout runs (both platforms): {failed} "
            f"({_problems(r for res in results for r in res.values())})",
            f"invariants after the run (synchronous=NORMAL platform): {main_invariants}",
            f"invariants after the run (synchronous=FULL platform): {full_invariants}",
        ]

    def p5(self, main: Shop) -> None:
        row = self.rows["P5"]
        url = main.gateway + main.product_path()
        seconds = self.profile.seconds
        request = openloop.get(url)

        async def closed(duration: float) -> openloop.Result:
            async with openloop.new_session(2048) as session:
                return await openloop.closed_loop(
                    session, request, concurrency=64, seconds=duration
                )

        async def opened(rate: float, seed: int) -> openloop.Result:
            async with openloop.new_session(2048) as session:
                result = await openloop.open_loop(
                    session, request, rate=rate, seconds=seconds, seed=seed
                )
            await asyncio.sleep(1)  # let the server's queues drain before the next run
            return result

        uvloop.run(closed(self.profile.warmup))
        peak = uvloop.run(closed(seconds)).goodput
        self.peak_reads = peak
        print(f"[bench]   P5 peak (closed loop, 64 callers): {peak:.0f} rps", flush=True)
        levels = {"half": 0.5, "peak": 1.0, "2x": 2.0}
        results = []
        for index in range(self.profile.rounds):
            got = {}
            for name, factor in levels.items():
                got[name] = uvloop.run(opened(peak * factor, seed=index * 10 + int(factor * 2)))
                print(f"[bench]   round {index + 1} {name}: {got[name].summary()}", flush=True)
            results.append(got)
        goodput = [ratio(r["2x"].goodput, r["peak"].goodput) for r in results]
        p99 = [ratio(r["2x"].p(0.99), r["half"].p(0.99)) for r in results]
        row.measured = f"**{fmt(median(goodput))}**; p99 x**{fmt(median(p99), 1)}**"
        row.raw = "; ".join(
            f"{name}: offered {fmt(median([r[name].offered_rps for r in results]), 0)}, "
            f"goodput {fmt(median([r[name].goodput for r in results]), 0)} rps, "
            f"admitted p99 {fmt(median([r[name].p(0.99) for r in results]), 1)} ms"
            for name in levels
        )
        row.command = (
            f"open-loop generator (scripts/bench/openloop.py) on `GET {main.product_path()}` "
            f"through the gateway; peak = closed loop, 64 callers: {peak:.0f} rps"
        )
        row.details += [
            "per-round goodput ratio: " + ", ".join(fmt(x) for x in goodput),
            "per-round p99 ratio: " + ", ".join(fmt(x, 1) for x in p99),
            "2x runs, answers: " + "; ".join(str(r["2x"].summary()["statuses"]) for r in results),
            "generator send lag p99 (ms) at 2x: "
            + ", ".join(str(r["2x"].summary()["send_lag_p99_ms"]) for r in results)
            + " (large means this client, not the server, fell behind its schedule)",
        ]

    def p6(self) -> None:
        row = self.rows["P6"]
        binary = build_toxiproxy()
        proxy_port, api_port = free_port(), free_port()
        server = ToxiproxyServer(binary, api_port, self.workdir / "toxiproxy.log")
        server.start()
        try:
            config = platform_config(self.workdir, "bulkhead")
            payment = f"127.0.0.1:{config.ports['payment']}"
            config.peer_urls[("order", "payment")] = f"http://127.0.0.1:{proxy_port}"

            async def create() -> None:
                async with Toxiproxy(server.url) as api:
                    await api.create_proxy("payment", f"127.0.0.1:{proxy_port}", payment)

            asyncio.run(create())
            with platforms(lambda: launch(config, "bulkhead", self.profile.customers)) as [shop]:
                self.start_seconds.append(shop.started_seconds)
                self._p6_runs(row, shop, server.url, timeout(0))
        finally:
            server.stop()

    def _p6_runs(self, row: Row, shop: Shop, api_url: str, fault: Any) -> None:
        catalog_rate = round(0.3 * self.peak_reads) if self.peak_reads else 200
        checkout_rate = 10.0
        url = shop.gateway + shop.product_path()
        order_body = {
            "payment_token": "tok_visa",
            "shipping_address": {
                "name": "Bench Baker",
                "line1": "1 Oven Lane",
                "city": "Leeds",
                "postal_code": "LS1 1AA",
                "country": "GB",
            },
        }

        async def measure(faulty: bool, seed: int, seconds: float) -> openloop.Result:
            idle: asyncio.Queue[str] = asyncio.Queue()
            for token in shop.tokens:
                idle.put_nowait(token)

            async def checkout(session: aiohttp.ClientSession) -> int:
                token = await idle.get()
                headers = {"Authorization": f"Bearer {token}"}
                try:
                    async with session.put(
                        f"{shop.gateway}/api/v1/cart/items/{shop.product_id}",
                        json={"quantity": 1},
                        headers=headers,
                    ) as resp:
                        await resp.read()
                    key = {"Idempotency-Key": uuid.uuid4().hex}
                    async with session.post(
                        f"{shop.gateway}/api/v1/orders", json=order_body, headers=headers | key
                    ) as resp:
                        await resp.read()
                        return resp.status
                finally:
                    idle.put_nowait(token)

            async with Toxiproxy(api_url) as api:
                if faulty:
                    await api.add_toxic("payment", fault)
                try:
                    async with (
                        openloop.new_session(1024) as reads,
                        openloop.new_session(256) as writes,
                    ):
                        catalog, orders = await asyncio.gather(
                            openloop.open_loop(
                                reads, openloop.get(url), rate=catalog_rate, seconds=seconds,
                                seed=seed,
                            ),
                            openloop.open_loop(
                                writes, checkout, rate=checkout_rate, seconds=seconds,
                                seed=seed + 1,
                            ),
                        )  # fmt: skip
                finally:
                    if faulty:
                        await api.remove_toxic("payment", fault.name)
            catalog.orders = orders  # type: ignore[attr-defined]
            await asyncio.sleep(2)  # the order service's breaker closes again (1 s open)
            return catalog

        def arm(faulty: bool) -> Callable[[], openloop.Result]:
            counter = iter(range(1000))

            def run() -> openloop.Result:
                return uvloop.run(measure(faulty, next(counter) * 7, self.profile.seconds))

            run.warm = lambda: uvloop.run(measure(faulty, 999, self.profile.warmup))  # type: ignore[attr-defined]
            return run

        results = self.rounds({"healthy": arm(False), "payment-failing": arm(True)})
        ratios = [ratio(r["payment-failing"].p(0.99), r["healthy"].p(0.99)) for r in results]
        row.measured = f"**{fmt(median(ratios))}**"
        row.raw = (
            "catalog p99 healthy / payment failing: "
            f"{fmt(median([r['healthy'].p(0.99) for r in results]), 1)} / "
            f"{fmt(median([r['payment-failing'].p(0.99) for r in results]), 1)} ms"
        )
        row.command = (
            f"open loop: catalog `GET {shop.product_path()}` at {catalog_rate} rps + checkouts "
            f"(cart PUT then order POST) at {checkout_rate:.0f}/s through the gateway; fault: "
            "Toxiproxy `timeout` toxic (blackhole) on order → payment"
        )
        row.details += [
            "per-round ratio: " + ", ".join(fmt(x) for x in ratios),
            "checkout answers healthy: "
            + "; ".join(str(r["healthy"].orders.summary()["statuses"]) for r in results),
            "checkout answers payment failing: "
            + "; ".join(str(r["payment-failing"].orders.summary()["statuses"]) for r in results),
            "catalog answers payment failing: "
            + "; ".join(str(r["payment-failing"].summary()["statuses"]) for r in results),
        ]
        row.details.append(f"invariants after the run: {invariants(shop)}")

    def p3(self) -> None:
        row = self.rows["P3"]
        if len(os.sched_getaffinity(0)) < 2:
            row.measured = "not measured: needs 2 CPUs"
            return
        with platforms(
            self.shop("one-worker", cpus="1", workers=1), self.shop("two-workers", workers=2)
        ) as [one, two]:
            path = one.product_path()
            arms = {
                "reads-1": self.wrk_arm(one.gateway + path, cpus="0"),
                "reads-2": self.wrk_arm(two.gateway + two.product_path(), cpus="0"),
                "checkout-1": self.wrk_arm(
                    one.gateway, script="checkout.lua", args=self.checkout_args(one), cpus="0"
                ),
                "checkout-2": self.wrk_arm(
                    two.gateway, script="checkout.lua", args=self.checkout_args(two), cpus="0"
                ),
            }
            results = self.rounds(arms)
            verdicts = [invariants(one), invariants(two)]

        def checkouts(run: tools.WrkRun) -> float:
            return run.counted("201") / float(run.data["seconds"])  # type: ignore[arg-type]

        reads = [ratio(r["reads-2"].rps, 2 * r["reads-1"].rps) for r in results]
        orders = [
            ratio(checkouts(r["checkout-2"]), 2 * checkouts(r["checkout-1"])) for r in results
        ]
        row.measured = f"reads **{fmt(median(reads))}**, checkout **{fmt(median(orders))}**"
        row.raw = (
            f"reads rps 1 pinned / 2 workers: {fmt(median([r['reads-1'].rps for r in results]), 0)}"
            f" / {fmt(median([r['reads-2'].rps for r in results]), 0)}; checkouts/s: "
            f"{fmt(median([checkouts(r['checkout-1']) for r in results]), 1)} / "
            f"{fmt(median([checkouts(r['checkout-2']) for r in results]), 1)}"
        )
        row.command = (
            f"`{results[0]['reads-2'].command}`; checkout: `{results[0]['checkout-2'].command}`"
        )
        row.details += [
            "1 worker: every process of the platform (NATS too) pinned to CPU 1 with taskset; "
            "2 workers: `SWEETSLICE_<SERVICE>_WORKERS=2` for all seven, unpinned; "
            "wrk pinned to CPU 0 in both",
            "per-round reads ratio: " + ", ".join(fmt(x) for x in reads),
            "per-round checkout ratio: " + ", ".join(fmt(x) for x in orders),
            f"invariants after the run: 1 worker {verdicts[0]}; 2 workers {verdicts[1]}",
        ]

    def p4(self) -> None:
        row = self.rows["P4"]
        sink_port = free_port()
        with tools.python_server("otlp_sink.py", sink_port, self.workdir / "sink.log") as sink:
            tracing = {
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.1",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none",
            }
            with platforms(
                self.shop("observed", env=tracing, settings={"METRICS_ENABLED": "true"}),
                self.shop(
                    "bare", env={"OTEL_SDK_DISABLED": "true"}, settings={"METRICS_ENABLED": "false"}
                ),
            ) as [observed, bare]:
                arms = {
                    "observed": self.wrk_arm(
                        observed.gateway, script="checkout.lua", args=self.checkout_args(observed)
                    ),
                    "bare": self.wrk_arm(
                        bare.gateway, script="checkout.lua", args=self.checkout_args(bare)
                    ),
                }
                results = self.rounds(arms)
                time.sleep(6)  # the span processors' batch delay (5 s by default)
                honoured = _metrics_status(bare.running.url("product"))
                exported = _sink_stats(sink)
                verdicts = [invariants(observed), invariants(bare)]

        def checkouts(run: tools.WrkRun) -> float:
            return run.counted("201") / float(run.data["seconds"])  # type: ignore[arg-type]

        ratios = [ratio(checkouts(r["observed"]), checkouts(r["bare"])) for r in results]
        row.measured = f"**{fmt(median(ratios))}**"
        row.raw = (
            "checkouts/s with / without: "
            f"{fmt(median([checkouts(r['observed']) for r in results]), 1)} / "
            f"{fmt(median([checkouts(r['bare']) for r in results]), 1)}"
        )
        row.command = f"`{results[0]['observed'].command}` against each platform"
        metrics_off = honoured == 404
        spans = int(exported.get("requests", 0))
        row.details += [
            "per-round ratio: " + ", ".join(fmt(x) for x in ratios),
            f"metrics switch honoured (`/metrics` of the bare platform's product service answers"
            f" {honoured}): {'yes' if metrics_off else 'NO: metrics were on in both arms'}",
            f"traces exported by the observed platform: {spans} OTLP export requests, "
            f"{exported.get('bytes', 0)} bytes"
            + ("" if spans else " (NONE: tracing was off in both arms)"),
            f"invariants after the run: with {verdicts[0]}; without {verdicts[1]}",
        ]
        if not metrics_off or not spans:
            row.measured += " (see notes: a switch was not in effect)"

    def guarded(self, goal: str, run: Callable[[], None]) -> None:
        """One goal's failure is recorded and the others still run."""
        print(f"[bench] {goal}", flush=True)
        started = time.monotonic()
        try:
            run()
        except Exception as exc:
            traceback.print_exc()
            self.rows[goal].measured = f"FAILED: {type(exc).__name__}: {str(exc)[:200]}"
            self.broken.append(goal)
        print(f"[bench] {goal} took {time.monotonic() - started:.0f}s", flush=True)

    broken: list[str]

    def run(self, only: set[str]) -> None:
        self.broken = []
        self.main_platform(only)
        for goal, method in (("P6", self.p6), ("P3", self.p3), ("P4", self.p4)):
            if goal in only:
                self.guarded(goal, method)


def _short(value: Any) -> str:
    if isinstance(value, tools.WrkRun):
        d = value.data
        c = d["counted"]
        return (
            f"{d['rps']:.0f} rps, p50 {d['p50_ms']:.2f} ms, "  # type: ignore[index]
            f"201: {c['201']}, 200: {c['200']}, 4xx: {c['4xx']}, 5xx: {c['5xx']} "  # type: ignore[index]
            f"{d.get('problems', '')}"
        )
    if isinstance(value, openloop.Result):
        return f"goodput {value.goodput:.0f}/s, p99 {value.p(0.99):.1f} ms"
    return str(value)


def _problems(runs: Any) -> str:
    """The problem types (or statuses) wrk's checkout script saw, over several runs."""
    seen = sorted({kind for run in runs for kind in str(run.data.get("problems", "")).split()})
    return "problems: " + (", ".join(seen) if seen else "none")


def _metrics_status(url: str) -> int:
    return httpx.get(url + "/metrics", timeout=10).status_code


def _sink_stats(url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(url + "/stats", timeout=10).json()
    return data


# The report


def render(bench: Bench, machine: dict[str, str], command: str, elapsed: float) -> str:
    profile = bench.profile
    out = ["# Benchmarks (PERFORMANCE.md P1-P8)", ""]
    if profile.name == "quick":
        out += [
            "> **Quick run on a busy machine.** These figures come from `make bench "
            "BENCH_QUICK=1` (runs of "
            f"{profile.seconds:g} s) while other test suites shared the two cores: they show the "
            "tooling works, not what the platform can do. Replace them with a full run "
            "(`make bench`) on a quiet machine.",
            "",
        ]
    starts = ", ".join(f"{s:.1f}" for s in bench.start_seconds)
    out += [
        f"Run: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, `{command}`, profile "
        f"**{profile.name}** ({profile.rounds} rounds of {profile.seconds:g} s per arm, "
        f"{profile.warmup:g} s warm-up), {elapsed / 60:.1f} minutes in all.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in machine.items()),
        "| SQLite | WAL, `synchronous=NORMAL` (the default) everywhere; P2 also runs "
        "`synchronous=FULL` for comparison |",
        "| CPU pinning | none, except P3: the 1-worker platform on CPU 1, wrk on CPU 0 |",
        "",
        "| # | goal | target | measured (median of per-round ratios) | raw medians | command |",
        "|---|---|---|---|---|---|",
    ]
    for row in bench.rows.values():
        cells = [row.id, row.goal, row.target, row.measured, row.raw or "-", row.command or "-"]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out += ["", "## Per goal", ""]
    for row in bench.rows.values():
        if row.details:
            out.append(f"**{row.id}**")
            out += [f"- {line}" for line in row.details]
            out.append("")
    out += [
        f"P8 for reference: the launcher's own start of each platform in this run took {starts} s"
        " (the same code path as `make up`, on this machine's load at the time).",
        "",
        "## Method",
        "",
        "- Every goal is a ratio of two configurations run in the same session, interleaved "
        "A B A B A B after one warm-up run of each; the figure is the median of the per-round "
        "ratios, so slow drift of the machine cancels out instead of favouring one side.",
        "- The platform runs as processes from `shopkit.launcher` (as `make up` does) on "
        "127.0.0.1 with free ports and SQLite files in a temporary directory; each platform "
        "gets one bench product with stock no run exhausts and pre-registered customers. The "
        "gateway's per-client rate limit is raised (one client drives everything); everything "
        "else is the default configuration: JSON access logs on, metrics on, tracing off "
        "except where P4 turns it on. The order service's breaker reopens after 1 s and it "
        "watches failed orders for late charges for 15 s (instead of 120 s), so P6 can turn "
        "its fault off between runs and every platform's invariants can be checked at the "
        "end; neither touches a healthy checkout's path.",
        "- Closed-loop throughput: Debian's wrk, one thread, 10 connections. Checkouts use "
        "`scripts/bench/wrk/checkout.lua`: it walks a ring of pre-made customers, filling the "
        "next customer's cart (PUT one unit) and checking out, with a fresh "
        "`Idempotency-Key`, the customer it filled 10-20 fills earlier, so each checkout has "
        "a cart filled just before it. Checkouts/s counts the 201 answers, each of which also "
        "cost one cart PUT; a checkout that met an empty cart (its fill not answered yet) "
        "counts as a failure and is listed. The bench waits 2 s after each checkout run for "
        "unanswered checkouts to finish, and checks the invariants of "
        "tests/e2e/invariants.py on every platform that took checkouts.",
        "- Latency claims use the open-loop generator (`scripts/bench/openloop.py`, asyncio + "
        "aiohttp on uvloop): Poisson arrivals, each latency measured from the request's "
        "intended start, so queueing is counted (no coordinated omission). It reports how late "
        "it started requests against its schedule; a large lag means the client, not the "
        "server, was the limit. P5's peak is this same client in closed loop (64 callers), so "
        "its own CPU cost is in both sides of the ratio. Goodput counts 2xx answers per second "
        "of the run; admitted p99 is over 2xx answers only.",
        "- P1's floor is nginx from Debian, one worker process, a keep-alive upstream pool, "
        "config generated into the temporary directory, listening on 127.0.0.1 only.",
        "- P2's yardstick is `scripts/bench/hello.py`: FastAPI with a response model on uvicorn "
        "(uvloop, httptools), one worker, like each service.",
        "- P4 toggles `SWEETSLICE_<SERVICE>_METRICS_ENABLED` and the standard `OTEL_*` "
        "variables (`parentbased_traceidratio` at 0.1) on two platforms; spans go to "
        "`scripts/bench/otlp_sink.py`, an OTLP/HTTP endpoint that only counts what it gets, so "
        "no collector's CPU is in the figure. The notes say whether each switch was in effect.",
        "- P6: Toxiproxy (built from its Go module by scripts/build-toxiproxy.sh) sits on the "
        "order → payment edge; the fault is a `timeout` toxic (a blackhole). Catalog reads "
        "and checkouts arrive open-loop at fixed rates in both arms.",
        "- The bench never fails on speed; it exits non-zero only when its tooling breaks.",
        "- Known: with more than one worker, a gateway worker whose first JWKS fetch failed "
        "(the user service was still starting) answers 503 `auth-unavailable` until its 30 s "
        "refetch interval has passed, while `/readyz`, answered by another worker, is green; "
        "the bench retries its set-up calls through that window.",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, to check the tooling")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument(
        "--only", default="P1,P2,P3,P4,P5,P6", help="comma-separated goals (default: all)"
    )
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every platform, nginx and sink started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    profile = QUICK if args.quick else FULL
    only = {goal.strip().upper() for goal in args.only.split(",")}
    # The bench sets telemetry itself; a caller's settings would leak into every platform.
    for name in list(os.environ):
        if name.startswith("OTEL_") or name == "PROMETHEUS_MULTIPROC_DIR":
            del os.environ[name]
    command = "make bench" + (" BENCH_QUICK=1" if args.quick else "")
    if only != {"P1", "P2", "P3", "P4", "P5", "P6"}:
        command += f" BENCH_ONLY={','.join(sorted(only))}"
    started = time.monotonic()
    try:
        tool_paths = tools.ensure_tools()
    except tools.ToolError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    machine = tools.machine(tool_paths)
    workdir = Path(tempfile.mkdtemp(prefix="sweetslice-bench-"))
    bench = Bench(profile, workdir, tool_paths)
    try:
        bench.run(only)
    finally:
        machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        report = render(bench, machine, command, time.monotonic() - started)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        shutil.rmtree(workdir, ignore_errors=True)
    print(report)
    if bench.broken:
        print(f"bench: tooling failed for {', '.join(bench.broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
