"""The rollout operator's packaging (issue 6, item 3), checked statically: its chart and the CRD
chart lint and render in every values scenario; the operator's pod passes K1 but for the one
thing it must have (its service-account token) and K4; its RBAC grants exactly what the
operator uses, with no wildcard, in a Role per watched namespace or one ClusterRole; its
NetworkPolicy lets it reach DNS, the API server and Prometheus and nothing else; checkov finds
nothing it is not told why to skip; the image builds the operator alone as a non-root user; the
sample ServiceRollout fits the CRD and names the order service's real Deployment; and
`make rollout` installs what the README says.

Every validator of this module is also fed a crafted bad manifest, to show it can fail.
"""

from __future__ import annotations

import copy
import importlib.util
import ipaddress
import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the lock

from tests.deploy.charts_support import (
    NAMESPACE,
    RELEASE,
    ROOT,
    Charts,
    CheckovRun,
    ToolError,
    built,
    run_checkov,
)
from tests.deploy.manifests import (
    Endpoint,
    Manifest,
    Network,
    parse_manifests,
    release_endpoints,
    resource_problems,
    restricted_violations,
)
from tests.deploy.test_images import hadolint, run_build_stage, stages, uv_binary

OPERATOR = "sweetslice-operator"
CRDS = "sweetslice-crds"
CRD_FILE = ROOT / "charts" / CRDS / "templates" / "servicerollouts.yaml"
FULLNAME = f"{RELEASE}-{OPERATOR}"
# The values scenarios: the chart's defaults and its ci/ folder (helm's convention).
SCENARIOS: dict[str, list[Path]] = {"default": []} | {
    path.stem: [path] for path in sorted((ROOT / "charts" / OPERATOR / "ci").glob("*.yaml"))
}
# The one K1 finding the operator has by design: kopf logs in with the pod's token.
TOKEN_FINDING = (
    f"Deployment/{FULLNAME}: the service-account token is mounted (automountServiceAccountToken)"
)


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print past pytest's capture, so `make test`'s log has the figures without -s."""
    with capsys.disabled():
        print(f"\n{text}")


# --- fixtures -----------------------------------------------------------------------------------


_rendered: dict[str, list[Manifest]] = {}


def render(charts: Charts, scenario: str) -> list[Manifest]:
    """The operator chart's objects with a scenario's values (release `shop`)."""
    if scenario not in _rendered:
        result = charts.template(OPERATOR, SCENARIOS[scenario])
        if result.returncode != 0:
            pytest.fail(f"helm template {OPERATOR} ({scenario}) failed:\n{result.stderr}")
        _rendered[scenario] = parse_manifests(result.stdout)
    return copy.deepcopy(_rendered[scenario])


def find(objects: Sequence[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def deployment(objects: Sequence[Manifest]) -> Manifest:
    (found,) = find(objects, "Deployment")
    return found


def container(objects: Sequence[Manifest]) -> dict[str, Any]:
    found: dict[str, Any] = deployment(objects)["spec"]["template"]["spec"]["containers"][0]
    return found


def env(objects: Sequence[Manifest]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(objects)["env"]}


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """helm's merge of a values file over the defaults: maps key by key, anything else replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def values(scenario: str) -> dict[str, Any]:
    """The chart's values as a scenario sets them."""
    merged: dict[str, Any] = yaml.safe_load(
        (ROOT / "charts" / OPERATOR / "values.yaml").read_text()
    )
    for path in SCENARIOS[scenario]:
        merged = _merge(merged, yaml.safe_load(path.read_text()) or {})
    return merged


# --- 1. schemas, lint, render -------------------------------------------------------------------


def _charts_script() -> Any:
    name = "sweetslice_charts_script"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "charts.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        # Registered before it runs: its dataclasses look their module up by name.
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_the_values_schemas_are_what_scripts_charts_writes() -> None:
    script = _charts_script()
    for chart, schema in ((OPERATOR, script.operator_schema()), (CRDS, script.crds_schema())):
        committed = json.loads((ROOT / "charts" / chart / "values.schema.json").read_text())
        assert committed == schema, f"charts/{chart}/values.schema.json: run `make charts`"


def test_the_scenarios_cover_both_rbac_modes() -> None:
    assert {"default", "all-namespaces", "monitoring"} <= set(SCENARIOS)
    assert values("all-namespaces")["watch"]["allNamespaces"] is True
    assert values("default")["watch"]["allNamespaces"] is False


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_operator_chart_lints_strictly(charts: Charts, scenario: str) -> None:
    result = charts.lint(OPERATOR, SCENARIOS[scenario])
    assert result.returncode == 0, result.stdout + result.stderr
    findings = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert all(line.startswith("[INFO]") for line in findings), findings


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_operator_chart_renders_what_its_values_ask(charts: Charts, scenario: str) -> None:
    objects = render(charts, scenario)
    wanted = values(scenario)
    kinds = sorted(o["kind"] for o in objects)
    rbac = ["ClusterRole", "ClusterRoleBinding"]
    if not wanted["watch"]["allNamespaces"]:
        count = len(wanted["watch"]["namespaces"]) or 1
        rbac = ["Role"] * count + ["RoleBinding"] * count
    monitoring = ["Service", "ServiceMonitor"] if wanted["monitoring"]["enabled"] else []
    assert kinds == sorted(["Deployment", "ServiceAccount", "NetworkPolicy", *rbac, *monitoring])
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "an object is rendered twice"


def test_the_crd_chart_lints_and_renders_the_crd_alone(charts: Charts) -> None:
    linted = charts.lint(CRDS)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    rendered = charts.template(CRDS)
    assert rendered.returncode == 0, rendered.stderr
    (crd,) = parse_manifests(rendered.stdout)
    assert crd == yaml.safe_load(CRD_FILE.read_text()), "the chart renders the file as it is"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "servicerollouts.rollouts.sweetslice.dev"
    # In templates/ (helm upgrade updates it), never in crds/ (installed once, never upgraded);
    # kept on uninstall, so removing the chart does not delete every ServiceRollout.
    assert not (ROOT / "charts" / CRDS / "crds").exists()
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


BAD_VALUES = {
    "an unknown key": (OPERATOR, {"replicas": 2}, "additional properties"),
    "a namespace that is no name": (OPERATOR, {"watch": {"namespaces": ["Shop_1"]}}, "pattern"),
    "no API server address": (
        OPERATOR,
        {"networkPolicy": {"apiServer": {"cidrs": []}}},
        "minItems",
    ),
    "an address without a prefix": (
        OPERATOR,
        {"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1"]}}},
        "pattern",
    ),
    "a tick of zero": (OPERATOR, {"tickSeconds": 0}, "minimum"),
    "a value for the CRD chart": (
        CRDS,
        {"watch": {"allNamespaces": True}},
        "additional properties",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_the_schemas_refuse_bad_values(charts: Charts, tmp_path: Path, case: str) -> None:
    chart, bad, message = BAD_VALUES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(bad))  # JSON is YAML
    for result in (charts.lint(chart, [path]), charts.template(chart, [path])):
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"{case} was accepted"
        assert "schema" in output and message in output, output


# --- 2. the Deployment: K1, K4, one replica, Recreate, probes -----------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_k1_the_operator_pod_is_restricted_but_for_its_token(
    charts: Charts, scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = render(charts, scenario)
    violations = restricted_violations(objects)
    report(capsys, f"K1 operator {scenario}: findings {violations}")
    assert violations == [TOKEN_FINDING]
    (account,) = find(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is True
    assert (
        deployment(objects)["spec"]["template"]["spec"]["serviceAccountName"]
        == (account["metadata"]["name"])
    )


def test_k1_still_catches_a_weakened_operator_pod(charts: Charts) -> None:
    objects = render(charts, "default")
    container(objects)["securityContext"]["readOnlyRootFilesystem"] = False
    assert restricted_violations(objects) == [
        f"Deployment/{FULLNAME}: containers[operator]: readOnlyRootFilesystem is not true",
        TOKEN_FINDING,
    ]


PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def deployment_problems(objects: Sequence[Manifest], health_port: int) -> list[str]:
    """One replica, Recreate, the three probes on /healthz of the health port, and K4."""
    found = deployment(objects)
    spec = found["spec"]
    out = resource_problems(objects)
    if spec.get("replicas") != 1:
        out.append(f"replicas {spec.get('replicas')}, not 1")
    if (spec.get("strategy") or {}).get("type") != "Recreate":
        out.append(f"strategy {spec.get('strategy')}, not Recreate")
    main = spec["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in main.get("ports") or []}
    if ports.get("health") != health_port:
        out.append(f"health port {ports.get('health')}, not {health_port}")
    for probe in PROBES:
        get = (main.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != "/healthz" or get.get("port") not in ("health", health_port):
            out.append(f"{probe}: {get or 'missing'}")
    return out


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_k4_one_recreated_replica_with_resources_and_probes(charts: Charts, scenario: str) -> None:
    objects = render(charts, scenario)
    assert deployment_problems(objects, values(scenario)["healthPort"]) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("RollingUpdate", "strategy"),
        ("two replicas", "replicas 2"),
        ("liveness on /livez", "livenessProbe"),
        ("no memory limit", "no memory in limits"),
        ("no startup probe", "startupProbe: missing"),
    ],
)
def test_k4_the_deployment_check_catches(charts: Charts, case: str, expected: str) -> None:
    objects = render(charts, "default")
    spec = deployment(objects)["spec"]
    main = container(objects)
    breaks: dict[str, Callable[[], object]] = {
        "RollingUpdate": lambda: spec.update(strategy={"type": "RollingUpdate"}),
        "two replicas": lambda: spec.update(replicas=2),
        "liveness on /livez": lambda: main["livenessProbe"]["httpGet"].update(path="/livez"),
        "no memory limit": lambda: main["resources"]["limits"].pop("memory"),
        "no startup probe": lambda: main.pop("startupProbe"),
    }
    breaks[case]()
    problems = deployment_problems(objects, 8080)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_settings_reach_the_operator(charts: Charts, scenario: str) -> None:
    objects = render(charts, scenario)
    wanted = values(scenario)
    got = env(objects)
    # In the pod the probes and Prometheus come from outside; the operator's default is loopback.
    assert got["SWEETSLICE_OPERATOR_HOST"] == "0.0.0.0"  # noqa: S104
    assert got["SWEETSLICE_OPERATOR_HEALTH_PORT"] == str(wanted["healthPort"])
    assert got["SWEETSLICE_OPERATOR_METRICS_PORT"] == str(wanted["metricsPort"])
    assert got["SWEETSLICE_OPERATOR_PROMETHEUS_URL"] == wanted["prometheus"]["url"]
    assert got["SWEETSLICE_OPERATOR_TICK_SECONDS"] == str(wanted["tickSeconds"])
    # The operator watches exactly where its RBAC lets it: every namespace or the Roles' ones.
    roles = sorted(r["metadata"]["namespace"] for r in find(objects, "Role"))
    watched = got["SWEETSLICE_OPERATOR_NAMESPACES"]
    assert sorted(filter(None, watched.split(","))) == roles
    assert (watched == "") == wanted["watch"]["allNamespaces"]
    assert got.get("SWEETSLICE_OPERATOR_PEERING", "") == wanted["peering"]["name"]
    assert container(objects)["image"] == "sweetslice-operator:0.1.0"


# --- 3. RBAC ------------------------------------------------------------------------------------

# What the operator does with the API (the design's list), and nothing else.
OPERATOR_RULES = {
    ("rollouts.sweetslice.dev", "servicerollouts"): {"get", "list", "watch", "patch"},
    ("rollouts.sweetslice.dev", "servicerollouts/status"): {"get", "list", "watch", "patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "events"): {"create", "patch"},
}
PEERING_VERBS = {"get", "list", "watch", "patch"}


def granted(role: Manifest) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, over all of a role's rules."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role.get("rules") or []:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                out.setdefault((group, resource), set()).update(rule.get("verbs") or [])
    return out


def rbac_problems(
    objects: Sequence[Manifest],
    expected: Mapping[tuple[str, str], set[str]],
    *,
    cluster: bool,
    namespaces: Sequence[str],
    account: tuple[str, str],
) -> list[str]:
    """Roles granting exactly `expected` (no wildcard, no resourceNames, no URLs), cluster-wide or
    in each of `namespaces` and nowhere else, each bound to the operator's account only."""
    out: list[str] = []
    role_kind, binding_kind = (
        ("ClusterRole", "ClusterRoleBinding")
        if cluster
        else (
            "Role",
            "RoleBinding",
        )
    )
    other = ("Role", "RoleBinding") if cluster else ("ClusterRole", "ClusterRoleBinding")
    out += [
        f"unexpected {o['kind']}/{o['metadata']['name']}" for o in objects if o["kind"] in other
    ]
    roles = find(objects, role_kind)
    bindings = find(objects, binding_kind)
    for role in roles:
        where = f"{role['kind']}/{role['metadata']['name']}"
        for rule in role.get("rules") or []:
            for key in ("apiGroups", "resources", "verbs"):
                if "*" in (rule.get(key) or []):
                    out.append(f"{where}: wildcard in {key}")
            for key in ("nonResourceURLs", "resourceNames"):
                if rule.get(key):
                    out.append(f"{where}: {key} {rule[key]}")
        if role.get("aggregationRule"):
            out.append(f"{where}: aggregationRule")
        got = granted(role)
        if got != dict(expected):
            extra = {k: sorted(v - expected.get(k, set())) for k, v in got.items()}
            missing = {k: sorted(v - got.get(k, set())) for k, v in expected.items()}
            out.append(
                f"{where}: grants more { ({k: v for k, v in extra.items() if v}) } "
                f"and less { ({k: v for k, v in missing.items() if v}) } than the operator uses"
            )
    if cluster:
        if len(roles) != 1 or len(bindings) != 1:
            out.append(f"{len(roles)} ClusterRoles and {len(bindings)} bindings, not one each")
    else:
        placed = sorted(r["metadata"].get("namespace") or "" for r in roles)
        bound = sorted(b["metadata"].get("namespace") or "" for b in bindings)
        if placed != sorted(namespaces) or bound != sorted(namespaces):
            out.append(f"Roles in {placed}, bindings in {bound}; wanted {sorted(namespaces)}")
    for binding in bindings:
        where = f"{binding['kind']}/{binding['metadata']['name']}"
        ref = binding.get("roleRef") or {}
        targets = [
            r
            for r in roles
            if r["metadata"]["name"] == ref.get("name")
            and (cluster or r["metadata"].get("namespace") == binding["metadata"].get("namespace"))
        ]
        if ref.get("kind") != role_kind or not targets:
            out.append(f"{where}: binds {ref}, not the operator's {role_kind}")
        subjects = [
            (s.get("kind"), s.get("namespace"), s.get("name"))
            for s in binding.get("subjects") or []
        ]
        if subjects != [("ServiceAccount", account[0], account[1])]:
            out.append(f"{where}: subjects {subjects}")
    return out


def expected_rules(scenario: str) -> dict[tuple[str, str], set[str]]:
    wanted = values(scenario)
    rules = dict(OPERATOR_RULES)
    if wanted["peering"]["name"]:
        kind = "clusterkopfpeerings" if wanted["watch"]["allNamespaces"] else "kopfpeerings"
        rules[("kopf.dev", kind)] = PEERING_VERBS
    return rules


def _rbac(objects: Sequence[Manifest], scenario: str) -> list[str]:
    wanted = values(scenario)
    return rbac_problems(
        objects,
        expected_rules(scenario),
        cluster=wanted["watch"]["allNamespaces"],
        namespaces=wanted["watch"]["namespaces"] or [NAMESPACE],
        account=(NAMESPACE, FULLNAME),
    )


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rbac_grants_exactly_what_the_operator_uses(
    charts: Charts, scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = render(charts, scenario)
    roles = [o for o in objects if o["kind"] in ("Role", "ClusterRole")]
    report(
        capsys,
        f"RBAC operator {scenario}: "
        + "; ".join(
            f"{r['kind']} in {r['metadata'].get('namespace', '(cluster)')}: {len(r['rules'])} rules"
            for r in roles
        ),
    )
    assert _rbac(objects, scenario) == []


def test_rbac_peering_rules_come_only_with_peering(charts: Charts) -> None:
    assert not any(g == "kopf.dev" for g, _ in expected_rules("default"))
    cluster = render(charts, "all-namespaces")
    (role,) = find(cluster, "ClusterRole")
    assert granted(role)[("kopf.dev", "clusterkopfpeerings")] == PEERING_VERBS


def _first_role(objects: list[Manifest]) -> dict[str, Any]:
    role: dict[str, Any] = next(o for o in objects if o["kind"] == "Role")
    return role


RBAC_BREAKS: dict[str, tuple[str, Any]] = {
    "a wildcard verb": (
        "wildcard in verbs",
        lambda objs: _first_role(objs)["rules"][1].update(verbs=["*"]),
    ),
    "a wildcard resource": (
        "wildcard in resources",
        lambda objs: _first_role(objs)["rules"].append(
            {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get"]}
        ),
    ),
    "secrets": (
        "grants more",
        lambda objs: _first_role(objs)["rules"].append(
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
        ),
    ),
    "update besides patch": (
        "grants more",
        lambda objs: _first_role(objs)["rules"][1]["verbs"].append("update"),
    ),
    "no delete of deployments": (
        "and less",
        lambda objs: _first_role(objs)["rules"][1]["verbs"].remove("delete"),
    ),
    "a ClusterRole besides": (
        "unexpected ClusterRole",
        lambda objs: objs.append({"kind": "ClusterRole", "metadata": {"name": "x"}, "rules": []}),
    ),
    "a binding to another account": (
        "subjects",
        lambda objs: next(o for o in objs if o["kind"] == "RoleBinding")["subjects"].append(
            {"kind": "ServiceAccount", "name": "default", "namespace": NAMESPACE}
        ),
    ),
    "a Role in another namespace": (
        "Roles in",
        lambda objs: _first_role(objs)["metadata"].update(namespace="default"),
    ),
}


@pytest.mark.parametrize("case", sorted(RBAC_BREAKS))
def test_rbac_check_catches(charts: Charts, case: str) -> None:
    objects = render(charts, "default")
    expected, damage = RBAC_BREAKS[case]
    damage(objects)
    problems = _rbac(objects, "default")
    assert any(expected in p for p in problems), problems


# --- 4. NetworkPolicy ---------------------------------------------------------------------------

KUBE_DNS = Endpoint("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, "10.96.0.10")
PROMETHEUS = Endpoint(
    "prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, "10.244.9.2"
)
# kind's API server (a node address) and the `kubernetes` Service's ClusterIP.
API_SERVER = Endpoint("api-server", None, {}, "172.18.0.2")
API_SERVICE = Endpoint("api-service", None, {}, "10.96.0.1")
INTERNET = Endpoint("internet", None, {}, "203.0.113.10")
STRANGER = Endpoint("stranger", NAMESPACE, {"app": "stranger"}, "10.244.9.4")
SHOP_ORDER = Endpoint(
    "order",
    NAMESPACE,
    {"app.kubernetes.io/name": "order", "app.kubernetes.io/instance": RELEASE},
    "10.244.9.5",
)
PROBES_OUTSIDE = (KUBE_DNS, PROMETHEUS, API_SERVER, API_SERVICE, INTERNET, STRANGER, SHOP_ORDER)


def operator_edges(objects: Sequence[Manifest]) -> set[tuple[str, str, int, str]]:
    """Every connection the policies allow to or from the operator's pod."""
    (operator,) = release_endpoints(objects, NAMESPACE)
    policies = find(objects, "NetworkPolicy")
    network = Network(policies, [operator, *PROBES_OUTSIDE], NAMESPACE)
    return {e for e in network.edges() if operator.name in e[:2]}


def expected_edges(scenario: str) -> set[tuple[str, str, int, str]]:
    """DNS, Prometheus, the API server's ports at the configured addresses, and Prometheus's
    scrapes when monitoring is on. The default addresses are the private ranges: in a cluster
    whose pods have such addresses (most), that lets the operator reach any pod on 443 and
    6443, the price of a default that works without knowing the cluster. `make rollout` (and
    the monitoring scenario) narrow it to the API server alone."""
    wanted = values(scenario)
    net = wanted["networkPolicy"]
    me = OPERATOR
    edges = {(me, "kube-dns", 53, "UDP"), (me, "kube-dns", 53, "TCP")}
    edges.add((me, "prometheus", net["prometheus"]["port"], "TCP"))
    blocks = [ipaddress.ip_network(c) for c in net["apiServer"]["cidrs"]]
    edges |= {
        (me, probe.name, port, "TCP")
        for probe in PROBES_OUTSIDE
        if any(ipaddress.ip_address(probe.ip) in block for block in blocks)
        for port in net["apiServer"]["ports"]
    }
    if wanted["monitoring"]["enabled"]:
        edges.add(("prometheus", me, wanted["metricsPort"], "TCP"))
    return edges


def test_narrowed_the_operator_reaches_the_api_server_and_no_pod_on_its_ports(
    charts: Charts,
) -> None:
    allowed = operator_edges(render(charts, "monitoring"))
    https = {(target, port) for source, target, port, _ in allowed if source == OPERATOR}
    assert {t for t, p in https if p in (443, 6443)} == {"api-server", "api-service"}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_network_policy_allows_dns_the_api_server_and_prometheus_only(
    charts: Charts, scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    allowed = operator_edges(render(charts, scenario))
    extra = sorted(allowed - expected_edges(scenario))
    missing = sorted(expected_edges(scenario) - allowed)
    report(
        capsys,
        f"NetworkPolicy operator {scenario}: allowed {len(allowed)}, "
        f"extra {extra}, missing {missing}",
    )
    assert (extra, missing) == ([], [])


def test_network_policy_check_catches_an_open_egress(charts: Charts) -> None:
    objects = render(charts, "default")
    (policy,) = find(objects, "NetworkPolicy")
    policy["spec"]["egress"].append({"to": [], "ports": [{"port": 443}]})
    allowed = operator_edges(objects)
    assert (OPERATOR, "internet", 443, "TCP") in allowed
    assert (OPERATOR, "stranger", 443, "TCP") in allowed


def test_network_policy_check_catches_a_missing_api_server(charts: Charts) -> None:
    objects = render(charts, "monitoring")
    (policy,) = find(objects, "NetworkPolicy")
    for rule in policy["spec"]["egress"]:
        rule["to"] = [p for p in rule["to"] if p.get("ipBlock", {}).get("cidr") != "10.96.0.1/32"]
    missing = expected_edges("monitoring") - operator_edges(objects)
    assert missing == {
        (OPERATOR, "api-service", 443, "TCP"),
        (OPERATOR, "api-service", 6443, "TCP"),
    }


# --- 5. checkov ---------------------------------------------------------------------------------

# Checks that fail on the operator's chart, each with why it is skipped.
OPERATOR_CHECKOV_SKIPS = {
    "CKV_K8S_21": "helm template leaves metadata.namespace unset; `helm install -n <namespace>` "
    "places the namespaced objects in the release namespace, never `default`",
    "CKV_K8S_15": "the image is pinned by version tag and kind side-loads it (`make rollout`); "
    "Always would make kind pull an image that is in no registry",
    "CKV_K8S_43": "the operator's image is built per release and pinned by tag; this machine "
    "reaches no registry to read a digest from",
    "CKV_K8S_38": "the operator is a client of the Kubernetes API: kopf logs in with the "
    "service-account token, so the pod mounts it; the RBAC test bounds what it can do",
}
# A ClusterRole checkov must fail on: wildcards and reading every Secret.
CHECKOV_CANARY = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: canary}
rules:
  - apiGroups: ["*"]
    resources: ["*"]
    verbs: ["*"]
"""


@pytest.fixture(scope="module")
def checkov_run(charts: Charts, tmp_path_factory: pytest.TempPathFactory) -> CheckovRun:
    """checkov once over every scenario's rendering and the canary (one slow-starting process)."""
    directory = tmp_path_factory.mktemp("operator-checkov")
    for scenario, files in SCENARIOS.items():
        result = charts.template(OPERATOR, files)
        assert result.returncode == 0, result.stderr
        (directory / f"{scenario}.yaml").write_text(result.stdout)
    (directory / "canary.yaml").write_text(CHECKOV_CANARY)
    try:
        checkov = built("SWEETSLICE_CHECKOV", "install-checkov.sh")
        return run_checkov(checkov, directory, list(OPERATOR_CHECKOV_SKIPS))
    except ToolError as error:
        pytest.fail(str(error))


def test_checkov_every_skip_has_a_reason() -> None:
    for check, reason in OPERATOR_CHECKOV_SKIPS.items():
        assert re.fullmatch(r"CKV2?_K8S_\d+", check) and len(reason) > 20, check


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_checkov_passes_on_the_operator_chart(
    checkov_run: CheckovRun, scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = checkov_run.failed.get(f"{scenario}.yaml", [])
    passed = checkov_run.passed.get(f"{scenario}.yaml", 0)
    report(
        capsys,
        f"checkov operator {scenario}: passed {passed}, failed {len(failed)}, skipped "
        f"{len(OPERATOR_CHECKOV_SKIPS)} ({', '.join(sorted(OPERATOR_CHECKOV_SKIPS))})",
    )
    assert passed > 40, "checkov checked nothing"
    assert [(c["check_id"], c["resource"], c["check_name"]) for c in failed] == []


def test_checkov_catches_a_wildcard_cluster_role(checkov_run: CheckovRun) -> None:
    caught = {c["check_id"] for c in checkov_run.failed.get("canary.yaml", [])}
    assert "CKV_K8S_49" in caught, caught  # wildcards in a Role or ClusterRole


# --- 6. the image -------------------------------------------------------------------------------

DOCKERFILE = ROOT / "operator" / "Dockerfile"


def test_the_operator_dockerfile_is_hadolint_clean() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_the_operator_alone_as_non_root() -> None:
    build, final = stages(DOCKERFILE.read_text())
    assert build[0].startswith("FROM python:3.11-slim") and build[0].endswith(" AS build")
    assert final[0].startswith("FROM python:3.11-slim")
    syncs = [line for line in build if line.startswith("RUN uv sync")]
    assert len(syncs) == 2
    assert all("--package sweetslice-operator" in s and "--frozen" in s for s in syncs)
    assert "--no-install-workspace" in syncs[0]
    copies = [line for line in build if line.startswith("COPY ")]
    # No kit, no service: the operator imports neither.
    assert copies == ["COPY pyproject.toml uv.lock ./", "COPY operator operator"]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] == "10001:10001", users
    assert not any(line.upper().startswith("HEALTHCHECK") for line in final)
    exposed = {int(p) for line in final if line.startswith("EXPOSE ") for p in line.split()[1:]}
    chart = yaml.safe_load((ROOT / "charts" / OPERATOR / "values.yaml").read_text())
    assert exposed == {chart["healthPort"], chart["metricsPort"]}
    assert final[-1] == 'CMD ["python", "-m", "shop_operator"]'


def test_the_build_stage_installs_the_operator_from_the_lock(tmp_path: Path) -> None:
    lock = (ROOT / "uv.lock").read_text()
    if 'name = "sweetslice-operator"' not in lock:
        pytest.fail("uv.lock has no sweetslice-operator: the workspace member is missing")
    python = run_build_stage(DOCKERFILE.read_text(), tmp_path)
    probe = subprocess.run(
        [str(python), "-c", "import kopf, shop_operator; print('ok')"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.stdout.strip() == "ok", probe.stderr
    installed = subprocess.run(
        [uv_binary(), "pip", "list", "--python", str(python)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Only the operator's dependencies: no service, no kit, no test or dev tools.
    assert "sweetslice-operator" in installed
    assert not any(
        name in installed for name in ("sweetslice-kit", "sweetslice-order", "pytest", "ruff")
    )


# --- 7. the sample and `make rollout` -----------------------------------------------------------


def schema_problems(value: Any, schema: Mapping[str, Any], where: str = "") -> list[str]:
    """The parts of a structural OpenAPI schema a ServiceRollout's spec uses: type, properties
    (unknown fields are pruned by the API server: reported here), required, items, minItems,
    maxItems, minimum, maximum, minLength, pattern, enum. CEL rules are checked by the tests
    that apply resources to a real API server."""
    out: list[str] = []
    kind = schema.get("type")
    checks = {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
    }
    if kind and not checks.get(kind, True):
        return [f"{where or '.'}: {value!r} is not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        out += [f"{where}.{k}: not in the schema" for k in value if k not in properties]
        out += [f"{where}.{k}: required" for k in schema.get("required") or [] if k not in value]
        for key, item in value.items():
            if key in properties:
                out += schema_problems(item, properties[key], f"{where}.{key}")
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 10**9):
            out.append(f"{where}: {len(value)} items")
        for index, item in enumerate(value):
            out += schema_problems(item, schema.get("items") or {}, f"{where}[{index}]")
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{where}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{where}: {value!r} does not match {schema['pattern']}")
    elif checks["number"]:
        low, high = schema.get("minimum"), schema.get("maximum")
        exclusive = schema.get("exclusiveMinimum") is True
        if low is not None and (value < low or (exclusive and value == low)):
            out.append(f"{where}: {value} below {low}")
        if high is not None and value > high:
            out.append(f"{where}: {value} above {high}")
    return out


SAMPLES = sorted((ROOT / "k8s" / "samples").glob("*.yaml"))


@pytest.fixture(scope="module")
def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _platform_release() -> str:
    skaffold = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    (release,) = [
        r
        for r in skaffold["deploy"]["helm"]["releases"]
        if r.get("chartPath") == "charts/sweetslice"
    ]
    name: str = release["name"]
    return name


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_each_sample_fits_the_crd_and_names_the_real_order_deployment(
    sample: Path, crd_schema: dict[str, Any]
) -> None:
    (resource,) = parse_manifests(sample.read_text())
    assert resource["apiVersion"] == "rollouts.sweetslice.dev/v1alpha1"
    assert resource["kind"] == "ServiceRollout"
    body = {k: v for k, v in resource.items() if k not in ("apiVersion", "kind", "metadata")}
    assert schema_problems(body, crd_schema) == []
    spec = resource["spec"]
    # kind: the umbrella release of skaffold.yaml, the order chart's Deployment and container.
    assert resource["metadata"]["namespace"] == NAMESPACE
    assert spec["deployment"] == f"{_platform_release()}-order"
    assert spec["container"] == "order"
    assert spec["image"] == "sweetslice-order:next"
    weights = [s["weight"] for s in spec["steps"]]
    assert weights == sorted(set(weights)), "weights strictly increasing"


def test_the_canary_sample_steps_20_50_80_with_pauses_and_thresholds() -> None:
    (resource,) = parse_manifests((ROOT / "k8s" / "samples" / "order-rollout.yaml").read_text())
    steps = resource["spec"]["steps"]
    assert [s["weight"] for s in steps] == [20, 50, 80]
    assert all(s["pauseSeconds"] > 0 for s in steps)
    analysis = resource["spec"]["analysis"]
    assert {"maxErrorRatio", "maxP95Seconds", "minRequests", "failureLimit"} <= set(analysis)


def test_the_schema_check_catches_a_bad_sample(crd_schema: dict[str, Any]) -> None:
    (resource,) = parse_manifests((ROOT / "k8s" / "samples" / "order-rollout.yaml").read_text())
    spec = resource["spec"]
    spec["steps"][0]["weight"] = 100
    spec["analysis"]["maxErrorRatio"] = "low"
    spec["imgae"] = "typo"
    del spec["deployment"]
    problems = schema_problems({"spec": spec}, crd_schema)
    assert problems == [
        ".spec.imgae: not in the schema",
        ".spec.deployment: required",
        ".spec.steps[0].weight: 100 above 99",
        ".spec.analysis.maxErrorRatio: 'low' is not number",
    ], problems


@pytest.fixture(scope="module")
def rollout_recipe() -> str:
    """What `make rollout` would run (make -n: printed, nothing run)."""
    result = subprocess.run(
        ["make", "-n", "rollout"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_rollout_installs_the_crd_then_the_operator_then_the_sample(
    rollout_recipe: str,
) -> None:
    steps = [
        "helm install sweetslice-crds charts/sweetslice-crds",
        "helm install sweetslice-operator charts/sweetslice-operator",
        "kubectl --context $ctx apply -f k8s/samples/order-rollout.yaml",
    ]
    positions = [rollout_recipe.find(step) for step in steps]
    assert all(p >= 0 for p in positions), positions
    assert positions == sorted(positions)
    # Installed only when missing; `helm upgrade` is how they are updated.
    assert "helm status sweetslice-crds" in rollout_recipe
    assert "helm status sweetslice-operator" in rollout_recipe
    assert "docker build -f operator/Dockerfile" in rollout_recipe
    for path in re.findall(r"(?:charts|k8s|operator|services)/[\w./-]+", rollout_recipe):
        assert (ROOT / path).exists(), path
