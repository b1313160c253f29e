"""A ServiceRollout's spec as typed values, with the CRD's defaults applied.

The API server applies the CRD defaults already; they are applied again here so that a spec
built by hand (tests, an older stored object) means the same thing.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The canary's own pods, and only the requests users make: the probes and the scrape answer
# 200 quickly every few seconds and would otherwise meet minRequests and flatter the latency.
CANARY_REQUESTS = 'namespace="{namespace}",pod=~"{canary}-.*",route!~"/livez|/readyz|/metrics"'
DEFAULT_QUERIES: dict[str, str] = {
    "requests": f"sum(increase(shop_http_requests_total{{{CANARY_REQUESTS}}}[{{window}}]))",
    "errorRatio": (
        f'sum(rate(shop_http_requests_total{{{CANARY_REQUESTS},status=~"5.."}}[{{window}}]))'
        f" / sum(rate(shop_http_requests_total{{{CANARY_REQUESTS}}}[{{window}}]))"
    ),
    "p95": (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(shop_http_request_duration_seconds_bucket{{{CANARY_REQUESTS}}}[{{window}}])))"
    ),
    "p99": (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(shop_http_request_duration_seconds_bucket{{{CANARY_REQUESTS}}}[{{window}}])))"
    ),
}


class SpecError(ValueError):
    """The spec cannot be acted on (the CRD schema normally prevents this)."""


@dataclass(frozen=True)
class Step:
    weight: int
    pause_seconds: int = 0


@dataclass(frozen=True)
class Analysis:
    interval_seconds: int = 30
    failure_limit: int = 2
    min_requests: int = 20
    max_error_ratio: float = 0.05
    max_p95_seconds: float | None = None
    max_p99_seconds: float | None = None
    window: str = "1m"
    prometheus_url: str | None = None
    queries: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str


@dataclass(frozen=True)
class RolloutSpec:
    deployment: str
    image: str
    steps: tuple[Step, ...]
    container: str | None = None
    env: tuple[EnvVar, ...] = ()
    analysis: Analysis = field(default_factory=Analysis)
    paused: bool = False
    abort: bool = False
    promote: bool = False

    def query(self, which: str) -> str:
        """The PromQL template for one of requests, errorRatio, p95, p99 (override or default)."""
        return self.analysis.queries.get(which) or DEFAULT_QUERIES[which]


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_spec(raw: Mapping[str, Any]) -> RolloutSpec:
    """Build a RolloutSpec from the resource's spec; raise SpecError when it is unusable."""
    deployment = raw.get("deployment")
    image = raw.get("image")
    if not isinstance(deployment, str) or not deployment:
        raise SpecError("spec.deployment is required")
    if not isinstance(image, str) or not image:
        raise SpecError("spec.image is required")
    raw_steps = raw.get("steps") or []
    if not raw_steps:
        raise SpecError("spec.steps needs at least one step")
    steps = tuple(
        Step(weight=int(s["weight"]), pause_seconds=int(s.get("pauseSeconds") or 0))
        for s in raw_steps
    )
    weights = [s.weight for s in steps]
    if any(not 1 <= w <= 99 for w in weights):
        raise SpecError("step weights must be between 1 and 99")
    if any(b <= a for a, b in itertools.pairwise(weights)):
        raise SpecError("step weights must be strictly increasing")
    a = raw.get("analysis") or {}
    analysis = Analysis(
        interval_seconds=int(a.get("intervalSeconds", 30)),
        failure_limit=int(a.get("failureLimit", 2)),
        min_requests=int(a.get("minRequests", 20)),
        max_error_ratio=float(a.get("maxErrorRatio", 0.05)),
        max_p95_seconds=_opt_float(a.get("maxP95Seconds")),
        max_p99_seconds=_opt_float(a.get("maxP99Seconds")),
        window=str(a.get("window") or "1m"),
        prometheus_url=a.get("prometheusUrl") or None,
        queries={k: str(v) for k, v in (a.get("queries") or {}).items() if v},
    )
    env = tuple(
        EnvVar(name=str(e["name"]), value=str(e.get("value", ""))) for e in raw.get("env") or []
    )
    return RolloutSpec(
        deployment=deployment,
        image=image,
        steps=steps,
        container=raw.get("container") or None,
        env=env,
        analysis=analysis,
        paused=bool(raw.get("paused")),
        abort=bool(raw.get("abort")),
        promote=bool(raw.get("promote")),
    )
