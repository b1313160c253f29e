"""K5: the whole platform installs, upgrades and uninstalls on a real Kubernetes API server.

The umbrella chart goes into a namespace that enforces the `restricted` Pod Security profile,
with the kind values (k8s/values-kind.yaml) plus charts/sweetslice/ci/kwok.yaml (no volumes: the
simulated nodes have no storage). kwok runs the pods: they become Ready and Jobs' pods succeed,
so the migration hooks complete. The test is one story, in order, because each step needs the
release the step before left behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.charts_support import Charts
from tests.deploy.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "sweetslice"
RELEASE = "shop"
SERVICES = ["user", "product", "cart", "order", "payment", "notification", "gateway"]
WITH_DATABASE = SERVICES[:-1]
# What a namespace holds before anything is installed in it, and keeps after.
NAMESPACE_DEFAULTS = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}


@pytest.fixture(scope="module")
def umbrella(charts: Charts) -> Path:
    return charts.root / "sweetslice"


def _values() -> list[str]:
    return [
        "-f",
        str(ROOT / "k8s" / "values-kind.yaml"),
        "-f",
        str(ROOT / "charts" / "sweetslice" / "ci" / "kwok.yaml"),
    ]


def _names(cluster: Cluster, kind: str) -> set[str]:
    items = cluster.get_json(kind, "-n", NAMESPACE)["items"]
    return {item["metadata"]["name"] for item in items}


def _replica_sets(cluster: Cluster) -> dict[str, set[str]]:
    """The ReplicaSets of each Deployment that still have pods: a roll replaces them."""
    owned: dict[str, set[str]] = {}
    for rs in cluster.get_json("replicasets", "-n", NAMESPACE)["items"]:
        if not rs.get("status", {}).get("replicas"):
            continue
        owner = rs["metadata"]["ownerReferences"][0]["name"]
        owned.setdefault(owner, set()).add(rs["metadata"]["name"])
    return owned


def _completed_jobs(cluster: Cluster) -> list[str]:
    """Jobs the controller reported Completed. Events outlive the hook Jobs, which Helm deletes
    once they succeed."""
    events = cluster.get_json(
        "events", "-n", NAMESPACE, "--field-selector", "involvedObject.kind=Job,reason=Completed"
    )["items"]
    return sorted(event["involvedObject"]["name"] for event in events)


def _secret_data(cluster: Cluster) -> dict[str, Any]:
    secrets = cluster.get_json("secrets", "-n", NAMESPACE)["items"]
    # Helm's own release records change with every revision; the platform's must not.
    return {
        s["metadata"]["name"]: s.get("data", {})
        for s in secrets
        if s.get("type") != "helm.sh/release.v1"
    }


def _leftovers(cluster: Cluster) -> list[str]:
    kinds = cluster.kubectl(
        "api-resources", "--verbs=list", "--namespaced", "-o", "name"
    ).stdout.split()
    kinds = [k for k in kinds if k not in {"events", "events.events.k8s.io"}]
    found = cluster.get_json(",".join(kinds), "-n", NAMESPACE)["items"]
    return sorted(
        f"{item['kind']}/{item['metadata']['name']}"
        for item in found
        if (item["kind"], item["metadata"]["name"]) not in NAMESPACE_DEFAULTS
    )


def test_install_upgrade_uninstall(cluster: Cluster, umbrella: Path) -> None:
    cluster.kubectl("apply", "-f", str(ROOT / "k8s" / "namespace.yaml"))
    cluster.wait_service_account(NAMESPACE)

    # Install. Helm returns only once every post-install hook (the migrations) has completed.
    installed = cluster.helm(
        "install", RELEASE, str(umbrella), "-n", NAMESPACE, *_values(), "--timeout", "5m"
    )
    assert "STATUS: deployed" in installed.stdout
    assert "would violate PodSecurity" not in installed.stderr, installed.stderr
    deployments = {f"{RELEASE}-{name}" for name in SERVICES}
    assert _names(cluster, "deployments") == deployments
    cluster.wait_deployments_available(NAMESPACE, timeout=180)
    for statefulset in (f"{RELEASE}-postgresql", f"{RELEASE}-nats"):
        cluster.kubectl(
            "rollout", "status", f"statefulset/{statefulset}", "-n", NAMESPACE, "--timeout=120s"
        )
    migrations = [f"{RELEASE}-{name}-migrate" for name in WITH_DATABASE]
    assert _completed_jobs(cluster) == sorted(migrations)
    # Succeeded hooks are deleted: nothing of them is left to leak past uninstall.
    assert not _names(cluster, "jobs")
    assert _names(cluster, "horizontalpodautoscalers") == deployments
    assert _names(cluster, "poddisruptionbudgets") == deployments
    pods = cluster.get_json("pods", "-n", NAMESPACE)["items"]
    assert all(pod["spec"].get("nodeName") for pod in pods)
    before = _replica_sets(cluster)
    secrets_before = _secret_data(cluster)
    print(f"\ninstalled: {len(pods)} pods on {len({p['spec']['nodeName'] for p in pods})} nodes")

    # Upgrade with one changed setting of one service: its pods roll, no one else's do.
    upgraded = cluster.helm(
        "upgrade", RELEASE, str(umbrella), "-n", NAMESPACE, *_values(),
        "--set", "order.config.saga_timeout_seconds=20", "--timeout", "5m",
    )  # fmt: skip
    assert "STATUS: deployed" in upgraded.stdout
    cluster.wait_deployments_available(NAMESPACE, timeout=180)
    after = _replica_sets(cluster)
    assert after[f"{RELEASE}-order"].isdisjoint(before[f"{RELEASE}-order"]), (before, after)
    unchanged = {name: rs for name, rs in after.items() if name != f"{RELEASE}-order"}
    assert unchanged == {name: rs for name, rs in before.items() if name != f"{RELEASE}-order"}
    config = cluster.get_json("configmap", f"{RELEASE}-order", "-n", NAMESPACE)["data"]
    assert config["SWEETSLICE_ORDER_SAGA_TIMEOUT_SECONDS"] == "20"
    # The pre-upgrade migrations ran again, once each.
    assert _completed_jobs(cluster) == sorted(migrations * 2)
    # Generated secrets (database passwords, token, signing key) survive the upgrade.
    assert _secret_data(cluster) == secrets_before
    revisions = json.loads(cluster.helm("history", RELEASE, "-n", NAMESPACE, "-o", "json").stdout)
    assert [r["status"] for r in revisions] == ["superseded", "deployed"]

    # Uninstall: nothing of the release is left in the namespace.
    cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")

    def nothing_left() -> str | None:
        left = _leftovers(cluster)
        return ", ".join(left) or None

    cluster.wait_for("nothing left after uninstall", nothing_left, timeout=120)
    assert not _leftovers(cluster)
