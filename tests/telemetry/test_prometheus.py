"""Every dashboard panel and every recording rule shows data, on a real Prometheus.

The platform runs as processes; a real Prometheus (the Debian package) scrapes every service's
/metrics each second and evaluates charts/sweetslice/files/prometheus/rules.yaml; customers browse,
fill carts, check out (confirmed, declined, out of stock, replayed, empty cart) and cancel
through the gateway. Then every query of every panel of charts/sweetslice/files/dashboards/*.json,
with its template variables set as a viewer picking "All" would, and every recording rule
must return at least one series from Prometheus's HTTP API. A panel whose query names a metric
or label nobody exports, or a rule that matches nothing, fails the test by name.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from shopkit.launcher import PlatformConfig, service_of

from tests.e2e.support import (
    ADMIN,
    RunningPlatform,
    fill_cart,
    fresh_product,
    key,
    login,
    new_customer,
    order_body,
    started_platform,
)
from tests.prometheus_server import PrometheusServer

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "sweetslice" / "files" / "prometheus" / "rules.yaml"
DASHBOARDS = REPO / "charts" / "sweetslice" / "files" / "dashboards"
SCRAPE_SECONDS = 1
# How long rates, rules and scrapes get to catch up with the traffic before a query that still
# returns nothing counts as broken.
SETTLE_SECONDS = 60.0
# Grafana's variables as a viewer with "All" selected sends them (allValue is ".*").
VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "service": ".*",
}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def substitute(expr: str) -> str:
    """The query with Grafana's variables filled in; an unknown variable is an error."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name.isdigit():  # a label_replace group reference such as ${1}
            return match.group(0)
        if name not in VARIABLES:
            raise AssertionError(f"unknown dashboard variable ${name} in {expr!r}")
        return VARIABLES[name]

    return _VARIABLE.sub(one, expr)


@dataclass(frozen=True)
class Query:
    where: str  # which dashboard, panel and target, or which rule
    expr: str


def panel_queries() -> list[Query]:
    queries = []
    boards = sorted(DASHBOARDS.glob("*.json"))
    assert boards, f"no dashboards in {DASHBOARDS}"
    for board in boards:
        doc = json.loads(board.read_text())
        for variable in doc["templating"]["list"]:
            if variable["type"] == "query":
                query = variable["query"]
                text = query["query"] if isinstance(query, dict) else query
                found = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", text)
                assert found, f"{board.name}: variable {variable['name']}: {text}"
                metric, label = found.groups()
                queries.append(
                    Query(
                        f"{board.name} variable ${variable['name']}",
                        f'count by ({label}) ({metric}{{{label}!=""}})',
                    )
                )
        for panel in _panels(doc["panels"]):
            targets = panel.get("targets", [])
            assert targets, f"{board.name}: panel {panel['title']!r} has no query"
            for target in targets:
                queries.append(
                    Query(
                        f"{board.name} / {panel['title']} / {target['refId']}",
                        substitute(target["expr"]),
                    )
                )
    return queries


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        if panel["type"] == "row":
            yield from _panels(panel.get("panels", []))
        else:
            yield panel


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def recording_rule_queries() -> list[Query]:
    """One query per recording rule: its name, narrowed to the labels the rule adds, so that
    rules sharing a name (one per SLO) are each checked."""
    queries = []
    for group in rule_groups():
        for rule in group["rules"]:
            if "record" not in rule:
                continue
            labels = ", ".join(f'{k}="{v}"' for k, v in sorted(rule.get("labels", {}).items()))
            where = f"rule {rule['record']}" + (f"{{{labels}}}" if labels else "")
            queries.append(Query(where, f"{rule['record']}{{{labels}}}"))
    return queries


class Prometheus(PrometheusServer):
    """Scraping every instance of the platform, one job per service, with the rules loaded."""

    def __init__(self, workdir: Path, targets: dict[str, list[str]]) -> None:
        super().__init__(
            workdir,
            {
                "global": {
                    "scrape_interval": f"{SCRAPE_SECONDS}s",
                    "scrape_timeout": f"{SCRAPE_SECONDS}s",
                    "evaluation_interval": f"{SCRAPE_SECONDS}s",
                },
                "rule_files": [str(RULES)],
                # One job per service, named after it: the scrape contract rules.yaml states.
                "scrape_configs": [
                    {"job_name": job, "static_configs": [{"targets": addresses}]}
                    for job, addresses in sorted(targets.items())
                ],
            },
        )


@pytest.fixture(scope="module")
def platform_config(tmp_path_factory: pytest.TempPathFactory) -> PlatformConfig:
    return PlatformConfig.ephemeral(
        tmp_path_factory.mktemp("monitored-platform"),
        admin=ADMIN,
        extra_env={
            # One client address drives everything here; the limiter has its own tests.
            "gateway": {
                "SWEETSLICE_GATEWAY_RATE_LIMIT_PER_SECOND": "10000",
                "SWEETSLICE_GATEWAY_RATE_LIMIT_BURST": "10000",
            },
        },
    )


@pytest.fixture(scope="module")
def prometheus(
    platform_config: PlatformConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """Started before the platform (a missing package fails at once); its first scrapes fail
    until the services are up."""
    targets: dict[str, list[str]] = {}
    for instance in platform_config.instances():
        targets.setdefault(service_of(instance), []).append(
            f"{platform_config.host}:{platform_config.ports[instance]}"
        )
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), targets)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def monitored_platform(
    prometheus: Prometheus, platform_config: PlatformConfig
) -> Iterator[RunningPlatform]:
    with started_platform(platform_config) as running:
        yield running


async def shop(gateway: str) -> dict[str, int]:
    """Browse, carts and checkouts of every kind through the gateway; returns what was done."""
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        admin = {"Authorization": f"Bearer {await login(client, *ADMIN)}"}
        bun = await fresh_product(client, admin, available=50, price=350)
        last = await fresh_product(client, admin, available=1, price=900)

        async def browse(n: int) -> None:
            for _ in range(n):
                assert (
                    await client.get("/api/v1/products", params={"limit": 5})
                ).status_code == 200
                found = await client.get("/api/v1/products", params={"q": "bun"})
                assert found.status_code == 200
                assert (await client.get(f"/api/v1/products/{bun['id']}")).status_code == 200
                assert (await client.get("/api/v1/categories")).status_code == 200
                missing = await client.get(f"/api/v1/products/{uuid.uuid4()}")
                assert missing.status_code == 404

        await asyncio.gather(*(browse(5) for _ in range(4)))
        assert (await client.get("/api/v1/cart")).status_code == 401

        async def checkout(token: str, lines: dict[str, int]) -> httpx.Response:
            customer = await new_customer(client)
            await fill_cart(client, customer, lines)
            assert (await client.get("/api/v1/cart", headers=customer.headers)).status_code == 200
            headers = {**customer.headers, **key()}
            resp = await client.post("/api/v1/orders", json=order_body(token), headers=headers)
            if resp.status_code == 201:
                again = await client.post("/api/v1/orders", json=order_body(token), headers=headers)
                assert again.status_code == 201, again.text
            history = await client.get("/api/v1/orders", headers=customer.headers)
            assert history.status_code == 200
            mails = await client.get("/api/v1/notifications", headers=customer.headers)
            assert mails.status_code == 200
            return resp

        *confirmed, declined, poor = await asyncio.gather(
            *(checkout("tok_visa", {bun["id"]: 2}) for _ in range(3)),
            checkout("tok_chargeDeclined", {bun["id"]: 1}),
            checkout("tok_chargeDeclinedInsufficientFunds", {bun["id"]: 1}),
        )
        assert all(r.status_code == 201 for r in confirmed), [r.text for r in confirmed]
        assert declined.status_code == 402, declined.text
        assert poor.status_code == 402, poor.text
        first = await checkout("tok_visa", {last["id"]: 1})
        assert first.status_code == 201, first.text
        sold_out = await checkout("tok_visa", {last["id"]: 1})
        assert sold_out.status_code == 409, sold_out.text
        nobody = await new_customer(client)
        empty = await client.post(
            "/api/v1/orders", json=order_body(), headers={**nobody.headers, **key()}
        )
        assert empty.status_code == 400, empty.text
    return {"confirmed": len(confirmed) + 1, "declined": 2}


async def cancel_one(gateway: str) -> None:
    """A customer checks out and cancels: a refund."""
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        admin = {"Authorization": f"Bearer {await login(client, *ADMIN)}"}
        cake = await fresh_product(client, admin, available=5, price=1200)
        customer = await new_customer(client)
        await fill_cart(client, customer, {cake["id"]: 1})
        placed = await client.post(
            "/api/v1/orders", json=order_body(), headers={**customer.headers, **key()}
        )
        assert placed.status_code == 201, placed.text
        cancelled = await client.post(
            f"/api/v1/orders/{placed.json()['id']}/cancel", headers=customer.headers
        )
        assert cancelled.status_code == 200, cancelled.text


def wait_for(prometheus: Prometheus, expr: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = prometheus.series(expr)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_every_panel_and_recording_rule_returns_data(
    prometheus: Prometheus, monitored_platform: RunningPlatform
) -> None:
    panels = panel_queries()
    rules = recording_rule_queries()

    instances = len(monitored_platform.config.instances())
    assert wait_for(prometheus, f"count(up == 1) == {instances}", 30), prometheus.api("targets")

    done = asyncio.run(shop(monitored_platform.gateway))
    asyncio.run(cancel_one(monitored_platform.gateway))
    # The scrapes and rule evaluations have seen the traffic once the last checkouts count.
    expected = done["confirmed"] + 1
    seen = wait_for(
        prometheus,
        f'sum(shop_order_checkouts_total{{outcome="confirmed"}}) >= {expected}',
        30,
    )
    assert seen, prometheus.series("shop_order_checkouts_total")

    pending = {q.where: q for q in [*panels, *rules]}
    deadline = time.monotonic() + SETTLE_SECONDS
    with ThreadPoolExecutor(max_workers=8) as pool:
        while pending and time.monotonic() < deadline:
            queries = list(pending.values())
            answers = pool.map(lambda q: prometheus.series(q.expr), queries)
            for query, found in zip(queries, answers, strict=True):
                if found:
                    del pending[query.where]
            if pending:
                time.sleep(1)
    empty = "\n".join(f"  {q.where}: {q.expr}" for q in pending.values())
    assert not pending, f"{len(pending)} queries returned no series:\n{empty}"

    # Every rule loaded, and none fails to evaluate.
    loaded = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
    in_file = [rule for group in rule_groups() for rule in group["rules"]]
    assert len(loaded) == len(in_file)
    broken = [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"]
    assert not broken, broken
    # The business metrics moved as the shop did.
    declines = prometheus.series("sum(shop_payment_declines_total)")
    assert float(declines[0]["value"][1]) == done["declined"]
    print(
        f"\n{len(panels)} dashboard queries ({len(list(DASHBOARDS.glob('*.json')))} dashboards)"
        f" and {len(rules)} recording rules returned data; {len(loaded)} rules loaded, all ok"
    )
