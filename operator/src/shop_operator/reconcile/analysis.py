"""Analysis: which PromQL to run for a canary, and the verdict from the values it returned."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from shop_operator.reconcile.manifests import canary_name
from shop_operator.reconcile.spec import Analysis, RolloutSpec

Verdict = Literal["Pass", "Fail", "Inconclusive"]


def render_query(template: str, *, namespace: str, canary: str, window: str) -> str:
    """Fill the placeholders; plain replacement, because PromQL is full of braces."""
    return (
        template.replace("{namespace}", namespace)
        .replace("{canary}", canary)
        .replace("{window}", window)
    )


def queries_for(spec: RolloutSpec, namespace: str) -> dict[str, str]:
    """The queries one analysis runs: requests and error ratio always, latency when limited."""
    wanted = ["requests", "errorRatio"]
    if spec.analysis.max_p95_seconds is not None:
        wanted.append("p95")
    if spec.analysis.max_p99_seconds is not None:
        wanted.append("p99")
    canary = canary_name(spec.deployment)
    return {
        key: render_query(
            spec.query(key), namespace=namespace, canary=canary, window=spec.analysis.window
        )
        for key in wanted
    }


@dataclass(frozen=True)
class Measurement:
    """What Prometheus answered. None is an empty result; `error` means it could not be asked."""

    requests: float | None = None
    error_ratio: float | None = None
    p95: float | None = None
    p99: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    reason: str
    requests: float | None = None
    error_ratio: float | None = None
    p95: float | None = None
    p99: float | None = None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def evaluate(analysis: Analysis, m: Measurement) -> Result:
    """The verdict of one analysis.

    An unreachable Prometheus is never a Fail by itself. Fewer requests than minRequests (or
    none at all) is Inconclusive: nothing can be said yet. With enough requests, an empty or
    NaN error ratio means no 5xx series exists, which is a ratio of 0.
    """
    if m.error is not None:
        return Result("Inconclusive", f"Prometheus query failed: {m.error}")
    requests = _finite(m.requests) or 0.0
    p95, p99 = _finite(m.p95), _finite(m.p99)
    if requests <= 0 or requests < analysis.min_requests:
        return Result(
            "Inconclusive",
            f"{requests:g} canary requests in {analysis.window}, "
            f"fewer than the {analysis.min_requests} needed",
            requests=requests,
            p95=p95,
            p99=p99,
        )
    ratio = _finite(m.error_ratio) or 0.0
    values = {"requests": requests, "error_ratio": ratio, "p95": p95, "p99": p99}
    failures: list[str] = []
    if ratio > analysis.max_error_ratio:
        failures.append(f"error ratio {ratio:.4g} > {analysis.max_error_ratio:g}")
    if analysis.max_p95_seconds is not None and p95 is not None and p95 > analysis.max_p95_seconds:
        failures.append(f"p95 {p95:.4g}s > {analysis.max_p95_seconds:g}s")
    if analysis.max_p99_seconds is not None and p99 is not None and p99 > analysis.max_p99_seconds:
        failures.append(f"p99 {p99:.4g}s > {analysis.max_p99_seconds:g}s")
    if failures:
        return Result("Fail", "; ".join(failures), **values)
    return Result(
        "Pass", f"error ratio {ratio:.4g} over {requests:g} requests within limits", **values
    )
