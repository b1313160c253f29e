"""The operator's settings from the environment, and the CRD agreeing with the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the lock
from shop_operator.reconcile.spec import Analysis
from shop_operator.reconcile.status import Status

CRD = Path(__file__).resolve().parents[2] / "charts/sweetslice-crds/templates/servicerollouts.yaml"


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from shop_operator.main import OperatorSettings

    for key in (
        "PROMETHEUS_URL",
        "TICK_SECONDS",
        "NAMESPACES",
        "HEALTH_PORT",
        "METRICS_PORT",
        "HOST",
        "PEERING",
    ):
        monkeypatch.delenv(f"SWEETSLICE_OPERATOR_{key}", raising=False)
    settings = OperatorSettings()
    assert settings.prometheus_url == "http://kube-prometheus-stack-prometheus.monitoring:9090"
    assert settings.tick_seconds == 5
    assert settings.namespaces == ()
    assert (settings.health_port, settings.metrics_port, settings.host) == (8080, 9102, "127.0.0.1")
    assert settings.peering is None
    assert settings.liveness_endpoint == "http://127.0.0.1:8080/healthz"


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from shop_operator.main import OperatorSettings

    monkeypatch.setenv("SWEETSLICE_OPERATOR_PROMETHEUS_URL", "http://127.0.0.1:9090")
    monkeypatch.setenv("SWEETSLICE_OPERATOR_TICK_SECONDS", "0.5")
    monkeypatch.setenv("SWEETSLICE_OPERATOR_NAMESPACES", " shop, team-a ,")
    monkeypatch.setenv("SWEETSLICE_OPERATOR_HEALTH_PORT", "18080")
    monkeypatch.setenv("SWEETSLICE_OPERATOR_HOST", "10.1.2.3")
    monkeypatch.setenv("SWEETSLICE_OPERATOR_PEERING", "")
    settings = OperatorSettings()
    assert settings.tick_seconds == 0.5
    assert settings.namespaces == ("shop", "team-a")
    assert settings.peering is None
    assert settings.liveness_endpoint == "http://10.1.2.3:18080/healthz"


@pytest.mark.parametrize(
    ("key", "value"),
    [("TICK_SECONDS", "0"), ("HEALTH_PORT", "70000"), ("PROMETHEUS_URL", "prometheus:9090")],
)
def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    from pydantic import ValidationError
    from shop_operator.main import OperatorSettings

    monkeypatch.setenv(f"SWEETSLICE_OPERATOR_{key}", value)
    with pytest.raises(ValidationError):
        OperatorSettings()


def _version() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["metadata"]["name"] == "servicerollouts.rollouts.sweetslice.dev"
    assert crd["spec"]["names"]["shortNames"] == ["srollout"]
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    return dict(version)


def test_crd_defaults_match_the_code() -> None:
    props = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    analysis = props["analysis"]["properties"]
    defaults = Analysis()
    assert analysis["intervalSeconds"]["default"] == defaults.interval_seconds
    assert analysis["failureLimit"]["default"] == defaults.failure_limit
    assert analysis["minRequests"]["default"] == defaults.min_requests
    assert analysis["maxErrorRatio"]["default"] == defaults.max_error_ratio
    assert analysis["window"]["default"] == defaults.window
    assert set(analysis["queries"]["properties"]) == {"requests", "errorRatio", "p95", "p99"}


def test_crd_status_schema_holds_everything_the_operator_writes() -> None:
    version = _version()
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    from shop_operator.reconcile.status import AnalysisStatus, parse_time

    when = parse_time("2025-01-01T00:00:00Z")
    assert when is not None
    full = Status(
        stable_replicas=1,
        step_started_at=when,
        observed_generation=1,
        analysis=AnalysisStatus(
            at=when, verdict="Pass", reason="r", requests=1.0, error_ratio=0.0, p95=0.1, p99=0.2
        ),
    ).to_dict()
    assert set(full) <= set(status)
    assert set(full["analysis"]) <= set(status["analysis"]["properties"])
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Deployment": ".spec.deployment",
        "Phase": ".status.phase",
        "Step": ".status.step",
        "Weight (%)": ".status.weight",
        "Verdict": ".status.analysis.verdict",
        "Error ratio": ".status.analysis.errorRatio",
        "Age": ".metadata.creationTimestamp",
    }
