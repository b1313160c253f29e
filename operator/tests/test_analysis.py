"""Query rendering and verdicts from metric values, and parsing Prometheus answers."""

from __future__ import annotations

import math
import socket
from collections.abc import Callable

import pytest
from shop_operator.prometheus import Prometheus, QueryError, scalar_of
from shop_operator.reconcile.analysis import Measurement, evaluate, queries_for, render_query
from shop_operator.reconcile.spec import RolloutSpec

Spec = Callable[..., RolloutSpec]


def test_default_queries_are_rendered_for_the_canary(rollout_spec: Spec) -> None:
    queries = queries_for(rollout_spec(analysis={"window": "2m"}), "shop")
    assert set(queries) == {"requests", "errorRatio", "p95", "p99"}
    users = 'namespace="shop",pod=~"order-canary-.*",route!~"/livez|/readyz|/metrics"'
    assert queries["requests"] == f"sum(increase(shop_http_requests_total{{{users}}}[2m]))"
    assert queries["errorRatio"] == (
        f'sum(rate(shop_http_requests_total{{{users},status=~"5.."}}[2m]))'
        f" / sum(rate(shop_http_requests_total{{{users}}}[2m]))"
    )
    assert queries["p99"].startswith("histogram_quantile(0.99, sum by (le) (rate(")
    assert f"shop_http_request_duration_seconds_bucket{{{users}}}[2m]" in queries["p95"]
    assert all(
        "{" + p + "}" not in q for q in queries.values() for p in ("namespace", "canary", "window")
    )


def test_latency_queries_run_only_when_limited(rollout_spec: Spec) -> None:
    spec = rollout_spec(analysis={"maxP95Seconds": None, "maxP99Seconds": None})
    assert set(queries_for(spec, "shop")) == {"requests", "errorRatio"}


def test_query_overrides(rollout_spec: Spec) -> None:
    spec = rollout_spec(
        analysis={
            "queries": {"requests": 'sum(my_requests{ns="{namespace}",d="{canary}"}[{window}])'}
        }
    )
    queries = queries_for(spec, "team-a")
    assert queries["requests"] == 'sum(my_requests{ns="team-a",d="order-canary"}[1m])'
    assert queries["errorRatio"].startswith("sum(rate(shop_http_requests_total")


def test_render_leaves_promql_braces_alone() -> None:
    assert render_query('x{a="{namespace}"} {window}', namespace="n", canary="c", window="5m") == (
        'x{a="n"} 5m'
    )


def _verdict(spec: RolloutSpec, measurement: Measurement) -> tuple[str, str]:
    result = evaluate(spec.analysis, measurement)
    return result.verdict, result.reason


def test_pass_within_limits(rollout_spec: Spec) -> None:
    verdict, reason = _verdict(
        rollout_spec(), Measurement(requests=100, error_ratio=0.01, p95=0.2, p99=0.4)
    )
    assert verdict == "Pass", reason


def test_fail_on_error_ratio(rollout_spec: Spec) -> None:
    verdict, reason = _verdict(
        rollout_spec(), Measurement(requests=100, error_ratio=0.2, p95=0.2, p99=0.4)
    )
    assert verdict == "Fail"
    assert "error ratio 0.2 > 0.05" in reason


def test_error_ratio_at_the_limit_passes(rollout_spec: Spec) -> None:
    assert _verdict(rollout_spec(), Measurement(requests=100, error_ratio=0.05))[0] == "Pass"


def test_fail_on_p95(rollout_spec: Spec) -> None:
    verdict, reason = _verdict(
        rollout_spec(), Measurement(requests=100, error_ratio=0.0, p95=0.8, p99=0.9)
    )
    assert verdict == "Fail"
    assert "p95" in reason
    assert "p99" not in reason


def test_fail_on_p99(rollout_spec: Spec) -> None:
    verdict, reason = _verdict(
        rollout_spec(), Measurement(requests=100, error_ratio=0.0, p95=0.3, p99=2.5)
    )
    assert verdict == "Fail"
    assert "p99 2.5s > 1s" in reason


def test_latency_without_a_limit_is_not_judged(rollout_spec: Spec) -> None:
    spec = rollout_spec(analysis={"maxP95Seconds": None, "maxP99Seconds": None})
    assert (
        _verdict(spec, Measurement(requests=100, error_ratio=0.0, p95=30.0, p99=60.0))[0] == "Pass"
    )


def test_inconclusive_below_min_requests(rollout_spec: Spec) -> None:
    # Even a terrible error ratio says nothing on 5 requests.
    verdict, reason = _verdict(rollout_spec(), Measurement(requests=5, error_ratio=1.0))
    assert verdict == "Inconclusive"
    assert "fewer than the 20 needed" in reason


@pytest.mark.parametrize(
    "measurement",
    [
        Measurement(requests=None, error_ratio=None),  # empty results
        Measurement(requests=0.0, error_ratio=float("nan")),  # 0/0
    ],
)
def test_no_traffic_is_inconclusive_even_with_min_requests_zero(
    rollout_spec: Spec, measurement: Measurement
) -> None:
    spec = rollout_spec(analysis={"minRequests": 0})
    assert _verdict(spec, measurement)[0] == "Inconclusive"


@pytest.mark.parametrize("ratio", [None, float("nan")])
def test_missing_error_series_with_traffic_is_a_zero_ratio(
    rollout_spec: Spec, ratio: float | None
) -> None:
    result = evaluate(rollout_spec().analysis, Measurement(requests=50, error_ratio=ratio))
    assert result.verdict == "Pass"
    assert result.error_ratio == 0.0


def test_unreachable_prometheus_is_inconclusive_with_its_reason(rollout_spec: Spec) -> None:
    verdict, reason = _verdict(
        rollout_spec(), Measurement(error="http://prom:9090 unreachable: ConnectError")
    )
    assert verdict == "Inconclusive"
    assert "unreachable" in reason


def test_scalar_of_vector_results() -> None:
    def vector(*values: str) -> dict[str, object]:
        return {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [{"metric": {}, "value": [1, v]} for v in values],
            },
        }

    assert scalar_of(vector("12.5")) == 12.5
    assert scalar_of(vector()) is None
    assert scalar_of(vector("1", "2")) == 3.0
    nan = scalar_of(vector("NaN"))
    assert nan is not None
    assert math.isnan(nan)
    assert (
        scalar_of({"status": "success", "data": {"resultType": "scalar", "result": [1, "4"]}})
        == 4.0
    )
    with pytest.raises(QueryError, match="parse error"):
        scalar_of({"status": "error", "error": "parse error"})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_prometheus_gives_an_error_measurement(rollout_spec: Spec) -> None:
    prometheus = Prometheus(timeout=2.0)
    try:
        url = f"http://127.0.0.1:{_closed_port()}"
        measurement = await prometheus.measure(url, queries_for(rollout_spec(), "shop"))
    finally:
        await prometheus.close()
    assert measurement.error is not None
    assert "unreachable" in measurement.error
    assert evaluate(rollout_spec().analysis, measurement).verdict == "Inconclusive"
