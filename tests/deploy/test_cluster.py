"""The chart tests' control plane (tests/deploy/cluster.py) does what a real cluster does for the
behaviour the charts rely on (RELIABILITY.md K1, K4, K5): Deployments roll out onto the fake
nodes, Jobs complete, the `restricted` Pod Security profile is enforced by namespace label, HPAs
are validated and stored, deleting a namespace deletes its contents, and nothing is left running
afterwards."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.cluster import (
    KWOK_NODE_ANNOTATION,
    ZONES,
    Cluster,
    ClusterError,
    Tools,
    port_open,
    running_cluster,
)

RESTRICTED_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def namespace(cluster: Cluster, name: str, labels: dict[str, str] | None = None) -> str:
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels or {}},
    }
    cluster.apply(json.dumps(manifest))
    cluster.wait_service_account(name)
    return name


def container(name: str = "app", **security: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "registry.invalid/sweetslice/app:1",
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "128Mi"},
        },
        "securityContext": security or RESTRICTED_SECURITY,
    }


def deployment(name: str, ns: str, replicas: int, **pod_spec: Any) -> str:
    labels = {"app": name}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [container()], **pod_spec},
                },
            },
        }
    )


def job(name: str, ns: str, completions: int = 1) -> str:
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "completions": completions,
                "backoffLimit": 0,
                "template": {"spec": {"restartPolicy": "Never", "containers": [container()]}},
            },
        }
    )


def pods(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("pods", "-n", ns)["items"]
    return items


def test_fake_nodes_are_ready_in_three_zones(cluster: Cluster) -> None:
    nodes = cluster.get_json("nodes")["items"]
    assert len(nodes) >= 3
    assert {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes} == set(ZONES)
    for node in nodes:
        assert node["metadata"]["annotations"][KWOK_NODE_ANNOTATION] == "fake"
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["status"]
        assert int(node["status"]["allocatable"]["pods"]) >= 100
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert version["gitVersion"].startswith("v1.34.")


def test_kwok_renews_each_fake_node_lease(cluster: Cluster) -> None:
    """The node lifecycle controller takes a node whose Lease is not renewed for NotReady (after
    50 s) and then its pods for NotReady: kwok must hold and renew every node's Lease."""

    def renewals() -> dict[str, str]:
        leases = cluster.get_json("leases", "-n", "kube-node-lease")["items"]
        return {lease["metadata"]["name"]: lease["spec"]["renewTime"] for lease in leases}

    nodes = {n["metadata"]["name"] for n in cluster.get_json("nodes")["items"]}
    cluster.wait_for(
        "a Lease per node", lambda: None if set(renewals()) == nodes else str(renewals()), 30
    )
    first = renewals()
    cluster.wait_for(
        "every Lease renewed",
        lambda: None if all(renewals()[n] != first[n] for n in nodes) else str(renewals()),
        timeout=30,
    )


def test_a_deployment_becomes_available_on_the_fake_nodes(cluster: Cluster) -> None:
    ns = namespace(cluster, "rollout")
    cluster.apply(deployment("web", ns, replicas=2))
    cluster.wait_deployments_available(ns, timeout=90)

    nodes = {n["metadata"]["name"] for n in cluster.get_json("nodes")["items"]}
    running = pods(cluster, ns)
    assert len(running) == 2
    for pod in running:
        assert pod["spec"]["nodeName"] in nodes
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["podIP"]
        assert all(s["ready"] for s in pod["status"]["containerStatuses"])
    replica_sets = cluster.get_json("replicasets", "-n", ns)["items"]
    assert [rs["status"]["readyReplicas"] for rs in replica_sets] == [2]


def test_a_deployment_that_cannot_be_scheduled_fails_the_wait(cluster: Cluster) -> None:
    ns = namespace(cluster, "unschedulable")
    cluster.apply(
        deployment("nowhere", ns, 1, nodeSelector={"topology.kubernetes.io/zone": "zone-x"})
    )
    with pytest.raises(ClusterError, match="deployments available") as failure:
        cluster.wait_deployments_available(ns, timeout=5)
    assert "--- kube-scheduler" in str(failure.value)  # the logs come with the failure
    [pod] = pods(cluster, ns)
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]


def test_a_job_completes(cluster: Cluster) -> None:
    ns = namespace(cluster, "jobs")
    cluster.apply(job("migrate", ns, completions=2))
    cluster.wait_jobs_complete(ns, timeout=90)
    [done] = cluster.get_json("jobs", "-n", ns)["items"]
    assert done["status"]["succeeded"] == 2
    assert {p["status"]["phase"] for p in pods(cluster, ns)} == {"Succeeded"}


def test_the_restricted_profile_is_enforced_by_namespace_label(cluster: Cluster) -> None:
    ns = namespace(cluster, "restricted", {"pod-security.kubernetes.io/enforce": "restricted"})

    def pod(name: str, **security: Any) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"containers": [container(**security)]},
            }
        )

    refused = cluster.kubectl("apply", "-f", "-", input=pod("root", privileged=True), check=False)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr
    assert "privileged" in refused.stderr

    cluster.apply(pod("compliant"))
    assert cluster.get_json("pod", "compliant", "-n", ns)["metadata"]["name"] == "compliant"

    # A workload's pods are refused too (the Deployment is stored, its ReplicaSet makes none).
    cluster.apply(deployment("lax", ns, 1).replace('"runAsNonRoot": true', '"runAsNonRoot": false'))
    cluster.wait_for(
        "the ReplicaSet's refusal",
        lambda: (
            None
            if any(
                c["type"] == "ReplicaFailure" and "violates PodSecurity" in c["message"]
                for rs in cluster.get_json("replicasets", "-n", ns)["items"]
                for c in rs.get("status", {}).get("conditions", [])
            )
            else "no ReplicaFailure yet"
        ),
        timeout=60,
    )
    assert [p["metadata"]["name"] for p in pods(cluster, ns)] == ["compliant"]


def test_an_hpa_is_validated_and_stored(cluster: Cluster) -> None:
    ns = namespace(cluster, "autoscaling")
    cluster.apply(deployment("api", ns, 2))

    def hpa(minimum: int, maximum: int) -> str:
        return json.dumps(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "api", "namespace": ns},
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "api",
                    },
                    "minReplicas": minimum,
                    "maxReplicas": maximum,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": 70},
                            },
                        }
                    ],
                },
            }
        )

    invalid = cluster.kubectl("apply", "-f", "-", input=hpa(5, 2), check=False)
    assert invalid.returncode != 0
    assert "maxReplicas" in invalid.stderr, invalid.stderr

    cluster.apply(hpa(2, 5))
    stored = cluster.get_json("hpa", "api", "-n", ns)
    assert stored["spec"]["maxReplicas"] == 5
    assert stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_deleting_a_namespace_removes_everything_in_it(cluster: Cluster) -> None:
    ns = namespace(cluster, "doomed")
    cluster.apply(deployment("web", ns, 2))
    cluster.apply(job("once", ns))
    cluster.kubectl("create", "configmap", "settings", "-n", ns, "--from-literal=a=b")
    cluster.kubectl("create", "service", "clusterip", "web", "-n", ns, "--tcp=80:8080")
    cluster.wait_deployments_available(ns, timeout=90)
    cluster.wait_jobs_complete(ns, timeout=90)
    assert len(pods(cluster, ns)) == 3

    cluster.kubectl("delete", "namespace", ns, "--wait=false")
    cluster.wait_namespace_gone(ns, timeout=120)

    everything = cluster.kubectl(
        "get",
        "pods,replicasets,deployments,jobs,services,configmaps,endpointslices,serviceaccounts",
        "--all-namespaces",
        "-o",
        "json",
    )
    left = [
        f"{i['kind']}/{i['metadata']['name']}"
        for i in json.loads(everything.stdout)["items"]
        if i["metadata"].get("namespace") == ns
    ]
    assert left == []


def test_every_process_stops_even_when_the_body_fails(tools: Tools, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def failing_test() -> None:
        with running_cluster(tmp_path, tools) as c:
            seen["pids"] = [component.process.pid for component in c.components]
            seen["ports"] = list(c.ports)
            assert all(port_open(port) for port in c.ports)
            raise RuntimeError("the test failed")

    with pytest.raises(RuntimeError, match="the test failed"):
        failing_test()
    assert len(seen["pids"]) == 5
    for pid in seen["pids"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not any(port_open(port) for port in seen["ports"])
