"""The rollout operator against a real API server (kwok runs the pods) and a real Prometheus.

Prometheus scrapes a /metrics endpoint the test controls (canary_metrics.py), playing the canary
pods: healthy, or answering 5xx. The operator runs as its own process (`python -m shop_operator`)
the way its image runs it, so it can be killed and started again mid-rollout. Each test gets a
namespace of its own with a stable `order` Deployment and Service, as the charts make them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the lock
from shopkit.launcher import free_port

from tests.deploy.canary_metrics import FAILING, HEALTHY, IDLE, CanaryMetrics
from tests.deploy.cluster import Cluster
from tests.prometheus_server import PrometheusServer

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "charts" / "sweetslice-crds" / "templates" / "servicerollouts.yaml"
STABLE_IMAGE = "sweetslice-order:1.0.0"
NEW_IMAGE = "sweetslice-order:1.1.0"
# Generous against a loaded 2-core machine; a healthy rollout here takes about 20 s.
ROLLOUT_TIMEOUT = 180


@pytest.fixture(scope="module")
def canary_metrics() -> Iterator[CanaryMetrics]:
    with CanaryMetrics() as metrics:
        yield metrics


@pytest.fixture(scope="module")
def prometheus(
    canary_metrics: CanaryMetrics, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "canaries",
                # The labels are the pods' own, as Kubernetes service discovery would give them.
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{canary_metrics.port}"]}],
            }
        ],
    }
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/servicerollouts.rollouts.sweetslice.dev",
        "--timeout=60s",
    )  # fmt: skip


class Operator:
    """`python -m shop_operator` against the test cluster, one namespace, a fast tick."""

    def __init__(self, cluster: Cluster, prometheus: PrometheusServer, namespace: str) -> None:
        self.log = cluster.folder / f"operator-{namespace}.log"
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "SWEETSLICE_OPERATOR_PROMETHEUS_URL": prometheus.url,
            "SWEETSLICE_OPERATOR_TICK_SECONDS": "1",
            "SWEETSLICE_OPERATOR_NAMESPACES": namespace,
            "SWEETSLICE_OPERATOR_HEALTH_PORT": str(self.health_port),
            "SWEETSLICE_OPERATOR_METRICS_PORT": str(self.metrics_port),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shop_operator"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def kill(self) -> None:
        """SIGKILL: no chance to save anything; what survives is what the status holds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-60:])


class Shop:
    """One test's namespace: a stable order Deployment + Service, and its rollouts."""

    def __init__(self, cluster: Cluster, operator: Operator, namespace: str) -> None:
        self.cluster = cluster
        self.operator = operator
        self.namespace = namespace

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.cluster.kubectl(*args, "-n", self.namespace, input=input).stdout

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.cluster.kubectl(
            "get", kind, name, "-n", self.namespace, "-o", "json", check=False
        )
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def rollout(self, name: str) -> dict[str, Any]:
        found = self.get("servicerollout", name)
        assert found is not None
        return found

    def stable_image(self) -> str:
        deployment = self.get("deployment", "order")
        assert deployment is not None
        image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        return image

    def create_rollout(self, name: str, **spec: Any) -> None:
        body = {
            "apiVersion": "rollouts.sweetslice.dev/v1alpha1",
            "kind": "ServiceRollout",
            "metadata": {"name": name},
            "spec": {
                "deployment": "order",
                "image": NEW_IMAGE,
                "steps": [{"weight": 25, "pauseSeconds": 2}, {"weight": 50, "pauseSeconds": 2}],
                "analysis": {
                    "intervalSeconds": 5,
                    "failureLimit": 2,
                    "minRequests": 10,
                    "maxErrorRatio": 0.05,
                    "maxP99Seconds": 1.0,
                    "window": "10s",
                },
                **spec,
            },
        }
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))

    def patch_spec(self, name: str, **changes: Any) -> None:
        self.kubectl(
            "patch", "servicerollout", name, "--type=merge", "-p", json.dumps({"spec": changes})
        )

    def wait_phase(
        self, name: str, *phases: str, timeout: float = ROLLOUT_TIMEOUT
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.rollout(name).get("status", {})
            if status.get("phase") in phases:
                return status
            time.sleep(0.5)
        raise AssertionError(
            f"{name} never reached {phases}; last status {json.dumps(status)}\n"
            f"operator log:\n{self.operator.tail()}"
        )

    def wait_step(self, name: str, step: int, timeout: float = ROLLOUT_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.rollout(name).get("status", {})
            if status.get("phase") == "Progressing" and status.get("step", -1) >= step:
                return status
            time.sleep(0.5)
        raise AssertionError(f"{name} never reached step {step}: {json.dumps(status)}\n"
                             f"operator log:\n{self.operator.tail()}")  # fmt: skip

    def events(self, name: str) -> list[str]:
        found = self.cluster.get_json(
            "events", "-n", self.namespace, "--field-selector",
            f"involvedObject.kind=ServiceRollout,involvedObject.name={name}",
        )["items"]  # fmt: skip
        return [f"{e['type']} {e['reason']}: {e.get('message', '')}" for e in found]


STABLE = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: order
  labels: {app.kubernetes.io/name: order, app.kubernetes.io/instance: shop}
spec:
  replicas: 3
  selector:
    matchLabels: {app.kubernetes.io/name: order, app.kubernetes.io/instance: shop}
  template:
    metadata:
      labels: {app.kubernetes.io/name: order, app.kubernetes.io/instance: shop}
    spec:
      containers:
        - name: order
          image: STABLE_IMAGE
          ports: [{name: http, containerPort: 8104}]
---
apiVersion: v1
kind: Service
metadata:
  name: order
spec:
  selector: {app.kubernetes.io/name: order, app.kubernetes.io/instance: shop}
  ports: [{name: http, port: 8104, targetPort: http}]
""".replace("STABLE_IMAGE", STABLE_IMAGE)


@pytest.fixture
def shop(
    cluster: Cluster, crd: None, prometheus: PrometheusServer, canary_metrics: CanaryMetrics
) -> Iterator[Shop]:
    namespace = f"rollout-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.wait_service_account(namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=STABLE)
    cluster.wait_deployments_available(namespace, names=("order",))
    canary_metrics.set(namespace, "order-canary", HEALTHY)
    operator = Operator(cluster, prometheus, namespace)
    operator.start()
    try:
        yield Shop(cluster, operator, namespace)
    finally:
        operator.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_a_healthy_canary_is_promoted_through_every_step(shop: Shop) -> None:
    shop.create_rollout("order-1-1")
    seen_weights: set[int] = set()
    deadline = time.monotonic() + ROLLOUT_TIMEOUT
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = shop.rollout("order-1-1").get("status", {})
        if status.get("phase") == "Progressing":
            seen_weights.add(status["weight"])
            canary = shop.get("deployment", "order-canary")
            assert canary is not None
            # The stable Deployment keeps its replicas: traffic moves by the canary's count.
            stable = shop.get("deployment", "order")
            assert stable is not None and stable["spec"]["replicas"] == 3
        if status.get("phase") == "Succeeded":
            break
        time.sleep(0.5)
    assert status.get("phase") == "Succeeded", (status, shop.operator.tail())
    assert seen_weights == {25, 50}
    assert shop.stable_image() == NEW_IMAGE
    assert shop.get("deployment", "order-canary") is None
    assert status["analysis"]["verdict"] == "Pass"
    # What `kubectl get servicerollouts` shows.
    table = shop.kubectl("get", "servicerollouts")
    header, row = table.splitlines()[:2]
    for column in ("PHASE", "STEP", "WEIGHT", "VERDICT"):
        assert column in header
    assert "Succeeded" in row and "Pass" in row
    events = shop.events("order-1-1")
    assert any("Normal" in e for e in events), events


def test_a_failing_canary_is_rolled_back(shop: Shop, canary_metrics: CanaryMetrics) -> None:
    canary_metrics.set(shop.namespace, "order-canary", FAILING)
    shop.create_rollout("order-bad")
    status = shop.wait_phase("order-bad", "RolledBack", "Succeeded")
    assert status["phase"] == "RolledBack"
    assert status["failures"] >= 2
    assert status["analysis"]["verdict"] == "Fail"
    assert status["analysis"]["errorRatio"] > 0.05
    assert shop.stable_image() == STABLE_IMAGE
    assert shop.get("deployment", "order-canary") is None
    assert any(e.startswith("Warning") for e in shop.events("order-bad"))


def test_abort_removes_the_canary_and_keeps_the_stable_version(shop: Shop) -> None:
    shop.create_rollout("order-abort", steps=[{"weight": 30, "pauseSeconds": 600}])
    shop.wait_step("order-abort", 0)
    assert shop.get("deployment", "order-canary") is not None
    shop.patch_spec("order-abort", abort=True)
    status = shop.wait_phase("order-abort", "Aborted")
    assert status["phase"] == "Aborted"
    assert shop.get("deployment", "order-canary") is None
    assert shop.stable_image() == STABLE_IMAGE


def test_pause_holds_the_step_until_resumed(shop: Shop) -> None:
    shop.create_rollout("order-pause", paused=True)
    status = shop.wait_phase("order-pause", "Paused")
    held = status.get("step", 0)
    time.sleep(8)  # longer than a step's pause and an analysis interval
    status = shop.rollout("order-pause")["status"]
    assert status["phase"] == "Paused" and status.get("step", 0) == held
    assert shop.stable_image() == STABLE_IMAGE
    shop.patch_spec("order-pause", paused=False)
    assert shop.wait_phase("order-pause", "Succeeded")["phase"] == "Succeeded"
    assert shop.stable_image() == NEW_IMAGE


def test_the_operator_killed_mid_rollout_finishes_it_after_restart(shop: Shop) -> None:
    shop.create_rollout(
        "order-restart",
        steps=[{"weight": 20, "pauseSeconds": 2}, {"weight": 40, "pauseSeconds": 2},
               {"weight": 60, "pauseSeconds": 2}],
    )  # fmt: skip
    before = shop.wait_step("order-restart", 1)
    shop.operator.kill()
    time.sleep(3)
    # Nothing moves while no operator runs.
    assert shop.rollout("order-restart")["status"]["step"] == before["step"]
    shop.operator.start()
    status = shop.wait_phase("order-restart", "Succeeded", "RolledBack")
    assert status["phase"] == "Succeeded"
    assert shop.stable_image() == NEW_IMAGE
    assert shop.get("deployment", "order-canary") is None


def test_deleting_a_rollout_removes_its_canary(shop: Shop) -> None:
    shop.create_rollout("order-delete", steps=[{"weight": 30, "pauseSeconds": 600}])
    shop.wait_step("order-delete", 0)
    assert shop.get("deployment", "order-canary") is not None
    shop.kubectl("delete", "servicerollout", "order-delete", "--wait=true", "--timeout=60s")
    deadline = time.monotonic() + 60
    while shop.get("deployment", "order-canary") is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert shop.get("deployment", "order-canary") is None
    assert shop.stable_image() == STABLE_IMAGE


def test_probe_traffic_alone_never_passes_the_analysis(
    shop: Shop, canary_metrics: CanaryMetrics
) -> None:
    # The canary answers its probes (fast 200s, more than minRequests) but no user requests.
    canary_metrics.set(shop.namespace, "order-canary", IDLE)
    shop.create_rollout("order-idle")
    shop.wait_step("order-idle", 0)
    time.sleep(12)  # two analysis intervals, and far past the first step's pause
    status = shop.rollout("order-idle")["status"]
    assert status["phase"] == "Progressing", status
    assert status["step"] == 0
    assert status["analysis"]["verdict"] == "Inconclusive", status["analysis"]
    assert shop.stable_image() == STABLE_IMAGE


def test_a_rollouts_release_is_fixed_once_created(shop: Shop) -> None:
    """Its analyses so far are about one image: the API server refuses another midway."""
    shop.create_rollout("order-fixed", steps=[{"weight": 30, "pauseSeconds": 600}])
    for change in ({"image": "sweetslice-order:9.9.9"}, {"env": [{"name": "X", "value": "1"}]},
                   {"deployment": "payment"}, {"container": "other"}):  # fmt: skip
        refused = shop.cluster.kubectl(
            "patch", "servicerollout", "order-fixed", "-n", shop.namespace, "--type=merge",
            "-p", json.dumps({"spec": change}), check=False,
        )  # fmt: skip
        assert refused.returncode != 0, change
        assert "fixed for a rollout" in refused.stderr, refused.stderr
    # The controls stay free to change.
    shop.patch_spec("order-fixed", paused=True)
    assert shop.wait_phase("order-fixed", "Paused")["phase"] == "Paused"
    long_name = "order-" + "x" * 60
    body = shop.rollout("order-fixed")
    body["metadata"] = {"name": long_name}
    body.pop("status", None)
    too_long = shop.cluster.kubectl(
        "create", "-n", shop.namespace, "-f", "-", input=json.dumps(body), check=False
    )
    assert too_long.returncode != 0
    assert "at most 63 characters" in too_long.stderr, too_long.stderr
