"""The kind and skaffold files, checked without a container engine (none runs here).

skaffold cannot build or deploy on this machine, so what can be known statically is checked: it
builds every image there is a Dockerfile for and hands each to its chart, every file it names
exists, each profile's patches put the add-ons before the platform and its values on the
platform, and the values those give render into a platform that passes K1 and K4.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the lock

from tests.deploy.charts_support import Charts
from tests.deploy.manifests import (
    parse_manifests,
    resource_problems,
    restricted_violations,
    scaling_problems,
)

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["user", "product", "cart", "order", "payment", "notification", "gateway"]
PLATFORM = "shop"


def _load(relative: str) -> Any:
    return yaml.safe_load((ROOT / relative).read_text())


def _apply(config: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 `add`, the only operation the profiles use, on a copy of the config."""
    result = copy.deepcopy(config)
    for patch in patches:
        assert patch["op"] == "add", patch
        *parents, last = patch["path"].strip("/").split("/")
        target: Any = result
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            if last == "-":
                target.append(patch["value"])
            else:
                target.insert(int(last), patch["value"])
        else:
            target[last] = patch["value"]
    return result


@pytest.fixture(scope="module")
def skaffold() -> dict[str, Any]:
    config: dict[str, Any] = _load("skaffold.yaml")
    return config


def test_skaffold_builds_every_image_and_hands_it_to_its_chart(skaffold: dict[str, Any]) -> None:
    artifacts = {a["image"]: a["docker"]["dockerfile"] for a in skaffold["build"]["artifacts"]}
    dockerfiles = {f"sweetslice-{p.parent.name}": str(p.relative_to(ROOT)) for p in
                   sorted((ROOT / "services").glob("*/Dockerfile"))}  # fmt: skip
    assert artifacts == dockerfiles
    platform = next(r for r in skaffold["deploy"]["helm"]["releases"] if r["name"] == PLATFORM)
    assert platform["chartPath"] == "charts/sweetslice"
    templates = platform["setValueTemplates"]
    for service in SERVICES:
        key = f"sweetslice_{service}"
        assert templates[f"{service}.image.repository"] == f"{{{{.IMAGE_REPO_{key}}}}}"
        assert templates[f"{service}.image.tag"] == f"{{{{.IMAGE_TAG_{key}}}}}"
    # The images' repository names are what the charts default to.
    for service in SERVICES:
        values = _load(f"charts/{service}/values.yaml")
        assert values["image"]["repository"] == f"sweetslice-{service}"


def test_every_file_skaffold_and_the_kind_config_name_exists(skaffold: dict[str, Any]) -> None:
    named = [a["docker"]["dockerfile"] for a in skaffold["build"]["artifacts"]]
    releases = list(skaffold["deploy"]["helm"]["releases"])
    for profile in skaffold["profiles"]:
        releases += [p["value"] for p in profile["patches"] if isinstance(p["value"], dict)]
        named += [p["value"] for p in profile["patches"] if isinstance(p["value"], str)]
    for release in releases:
        named += release.get("valuesFiles", [])
        if "chartPath" in release:
            named.append(release["chartPath"])
        else:
            # A chart from elsewhere is named with its repository and an exact version.
            assert release["repo"].startswith("https://"), release
            assert re.fullmatch(r"\d+\.\d+\.\d+", release["version"]), release
    for verify in skaffold["verify"]:
        named.append(verify["executionMode"]["kubernetesCluster"]["jobManifestPath"])
    missing = [path for path in named if not (ROOT / path).exists()]
    assert missing == []


@pytest.mark.parametrize("profile", ["observability", "consul"])
def test_a_profile_puts_its_add_ons_first_and_its_values_on_the_platform(
    skaffold: dict[str, Any], profile: str
) -> None:
    patches = next(p["patches"] for p in skaffold["profiles"] if p["name"] == profile)
    releases = _apply(skaffold, patches)["deploy"]["helm"]["releases"]
    names = [r["name"] for r in releases]
    assert names[-1] == PLATFORM, names
    added = {r["name"] for r in releases} - {
        r["name"] for r in skaffold["deploy"]["helm"]["releases"]
    }
    assert added
    assert releases[-1]["valuesFiles"] == ["k8s/values-kind.yaml", f"k8s/values-{profile}.yaml"]
    # Nothing else got the platform's values.
    assert all(f"k8s/values-{profile}.yaml" not in r.get("valuesFiles", []) for r in releases[:-1])


def test_the_cluster_and_the_forwarded_ports_listen_on_loopback_only(
    skaffold: dict[str, Any],
) -> None:
    kind = _load("k8s/kind-cluster.yaml")
    mappings = [m for node in kind["nodes"] for m in node.get("extraPortMappings", [])]
    assert mappings and all(m["listenAddress"] == "127.0.0.1" for m in mappings)
    assert {node["role"] for node in kind["nodes"]} == {"control-plane", "worker"}
    assert all(forward["address"] == "127.0.0.1" for forward in skaffold["portForward"])


def test_the_platform_namespace_enforces_the_restricted_profile() -> None:
    namespaces = {
        doc["metadata"]["name"]: doc["metadata"]["labels"]
        for doc in yaml.safe_load_all((ROOT / "k8s" / "namespace.yaml").read_text())
    }
    assert namespaces["sweetslice"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", [None, "observability", "consul"])
def test_the_kind_values_render_a_hardened_platform(charts: Charts, overlay: str | None) -> None:
    values = [ROOT / "k8s" / "values-kind.yaml"]
    if overlay:
        values.append(ROOT / "k8s" / f"values-{overlay}.yaml")
    rendered = charts.template("sweetslice", values=values)
    assert rendered.returncode == 0, rendered.stderr
    objects = parse_manifests(rendered.stdout)
    assert restricted_violations(objects) == []
    assert resource_problems(objects) + scaling_problems(objects, SERVICES) == []
    kinds = {o["kind"] for o in objects}
    if overlay == "observability":
        assert {"ServiceMonitor", "PrometheusRule"} <= kinds
        dashboards = [
            o for o in objects if o["metadata"].get("labels", {}).get("grafana_dashboard")
        ]
        assert len(dashboards) == len(
            list((ROOT / "charts/sweetslice/files/dashboards").glob("*.json"))
        )
    if overlay == "consul":
        config = next(
            o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "shop-order"
        )
        assert (
            config["data"]["SWEETSLICE_ORDER_CONSUL_HTTP_ADDR"]
            == "http://consul-server.consul:8500"
        )


def test_the_makefile_has_the_kubernetes_targets_the_readme_gives() -> None:
    makefile = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    for target in ("kind-up", "deploy", "kind-down"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
        assert f"make {target}" in readme, target


@pytest.mark.parametrize(
    ("sets", "refusal"),
    [
        (["postgresql.enabled=false"], "postgresql.enabled=false: set global.database.egressTo"),
        (["nats.enabled=false"], "nats.enabled=false: set global.broker.egressTo"),
        (["order.database.existingSecret=mine"], "order.database: with the release's PostgreSQL"),
        (["cart.database.enabled=false"], "cart.database: with the release's PostgreSQL"),
        (["global.consul.enabled=true"], "global.consul.egressTo must name Consul's pods"),
        # nats-server reads K/M/G/T; a Kubernetes quantity would stop it at start.
        (["nats.jetstream.maxFileStore=1Gi"], "maxFileStore"),
    ],
)
def test_combinations_that_would_install_but_not_work_are_refused(
    charts: Charts, sets: list[str], refusal: str
) -> None:
    rendered = charts.template("sweetslice", sets=sets)
    assert rendered.returncode != 0
    assert refusal in rendered.stderr, rendered.stderr


def test_stateful_data_goes_with_the_release(charts: Charts) -> None:
    rendered = charts.template("sweetslice", values=[ROOT / "k8s" / "values-kind.yaml"])
    assert rendered.returncode == 0, rendered.stderr
    statefulsets = [o for o in parse_manifests(rendered.stdout) if o["kind"] == "StatefulSet"]
    assert len(statefulsets) == 2
    for statefulset in statefulsets:
        policy = statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]
        assert policy["whenDeleted"] == "Delete", statefulset["metadata"]["name"]
    nats = next(o for o in parse_manifests(rendered.stdout) if o["kind"] == "ConfigMap"
                and o["metadata"]["name"] == "shop-nats")  # fmt: skip
    # In nats-server's own units, unquoted.
    assert "max_file_store: 1G\n" in nats["data"]["nats.conf"]
