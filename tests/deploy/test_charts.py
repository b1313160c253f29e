"""Static checks of the Helm charts (RELIABILITY.md K1-K4, PERFORMANCE.md P7): lint and render
every values scenario, then hold the rendered objects against the Pod Security Standard, the
declared call graph, the resource and scaling rules, checkov and the footprint budget.

Every validator is also fed a crafted bad manifest here, to show it can fail.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.charts_support import (
    DATABASE_SERVICES,
    NAMESPACE,
    RELEASE,
    ROOT,
    SERVICE_CHART_SETS,
    SERVICES,
    Charts,
    CheckovRun,
    ToolError,
    built,
    run_checkov,
    scenario_values,
)
from tests.deploy.manifests import (
    Edge,
    Endpoint,
    Manifest,
    Network,
    changed,
    compare_edges,
    default_deny_problems,
    footprint,
    footprint_problems,
    parse_manifests,
    quantity,
    release_endpoints,
    resource_problems,
    restricted_violations,
    scaling_problems,
    selector_matches,
    template_annotations,
)

SCENARIOS = sorted(scenario_values())
REQUIRED_SCENARIOS = {"default", "kind", "observability", "external-deps", "development", "consul"}
ALONE_CHARTS = (*SERVICES, "postgresql", "nats")


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print past pytest's capture, so `make test`'s log has the figures without -s."""
    with capsys.disabled():
        print(f"\n{text}")


# --- fixtures -----------------------------------------------------------------------------------


# A Deployment checkov must fail on whatever we skip: privileged, root, host network.
CHECKOV_CANARY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: canary}
spec:
  selector: {matchLabels: {app: canary}}
  template:
    metadata: {labels: {app: canary}}
    spec:
      hostNetwork: true
      containers:
        - name: canary
          image: busybox
          securityContext: {privileged: true, allowPrivilegeEscalation: true, runAsUser: 0}
"""
CHECKOV_SCENARIOS = ("default", "kind", "consul")


@pytest.fixture(scope="session")
def checkov_run(charts: Charts, tmp_path_factory: pytest.TempPathFactory) -> CheckovRun:
    """checkov once over the rendered scenarios and the canary (one process: it is slow to
    start)."""
    directory = tmp_path_factory.mktemp("checkov")
    for scenario in CHECKOV_SCENARIOS:
        (directory / f"{scenario}.yaml").write_text(charts.render_text(scenario))
    (directory / "canary.yaml").write_text(CHECKOV_CANARY)
    try:
        checkov = built("SWEETSLICE_CHECKOV", "install-checkov.sh")
        return run_checkov(checkov, directory, list(CHECKOV_SKIPS))
    except ToolError as error:
        pytest.fail(str(error))


# --- 1. values scenarios, lint, render, schema --------------------------------------------------


def test_the_required_scenarios_exist() -> None:
    assert set(SCENARIOS) >= REQUIRED_SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_umbrella_lints_strictly(charts: Charts, scenario: str) -> None:
    result = charts.lint("sweetslice", scenario_values()[scenario])
    assert result.returncode == 0, result.stdout + result.stderr
    # --strict fails on warnings; what remains is informational ("icon is recommended").
    findings = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert all(line.startswith("[INFO]") for line in findings), findings


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_umbrella_renders_objects_that_parse(charts: Charts, scenario: str) -> None:
    objects = charts.render(scenario)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "NetworkPolicy", "HorizontalPodAutoscaler"} <= kinds
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "an object is rendered twice"


def test_scenarios_render_what_they_set(charts: Charts) -> None:
    external = {o["metadata"]["name"] for o in charts.render("external-deps")}
    assert f"{RELEASE}-postgresql" not in external and f"{RELEASE}-nats" not in external
    observability = {o["kind"] for o in charts.render("observability")}
    assert {"ServiceMonitor", "PrometheusRule", "Ingress"} <= observability
    development = charts.render("development")
    config = _find(development, "ConfigMap", f"{RELEASE}-order")
    assert config["data"]["SWEETSLICE_ORDER_ENVIRONMENT"] == "development"


@pytest.mark.parametrize("chart", ALONE_CHARTS)
def test_each_chart_alone_lints_and_renders(charts: Charts, chart: str) -> None:
    sets = SERVICE_CHART_SETS if chart in SERVICES else ()
    linted = charts.lint(chart, sets=sets)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    rendered = charts.template(chart, sets=sets)
    assert rendered.returncode == 0, rendered.stderr
    assert any(o["kind"] in ("Deployment", "StatefulSet") for o in parse_manifests(rendered.stdout))


BAD_VALUES = {
    "a string for an integer": ({"order": {"autoscaling": {"minReplicas": "two"}}}, "want integer"),
    "an unknown top-level key": ({"databse": {"host": "x"}}, "additional properties"),
    "an unknown key in a service": ({"cart": {"replicas": 3}}, "additional properties"),
    "an environment not offered": ({"global": {"environment": "staging"}}, "environment"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_the_schema_refuses_bad_values(charts: Charts, tmp_path: Path, case: str) -> None:
    values, message = BAD_VALUES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(values))  # JSON is YAML
    for result in (charts.lint("sweetslice", [path]), charts.template("sweetslice", [path])):
        assert result.returncode != 0, f"{case} was accepted"
        assert "schema" in (result.stdout + result.stderr), result.stdout + result.stderr
        assert message in (result.stdout + result.stderr)


# --- 2. K1: Pod Security Standard `restricted` --------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_k1_every_pod_template_is_restricted(
    charts: Charts, scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = charts.render(scenario)
    violations = restricted_violations(objects)
    templates = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]
    report(capsys, f"K1 {scenario}: {len(templates)} pod templates, violations {len(violations)}")
    assert len(templates) >= len(SERVICES)
    assert violations == []


def test_k1_the_namespace_enforces_restricted() -> None:
    namespaces = parse_manifests((ROOT / "k8s" / "namespace.yaml").read_text())
    labels = next(n for n in namespaces if n["metadata"]["name"] == NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def compliant_deployment() -> Manifest:
    container = {
        "name": "app",
        "image": "app:1",
        "ports": [{"name": "http", "containerPort": 8080}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def _pod(obj: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def _container(obj: Manifest) -> dict[str, Any]:
    container: dict[str, Any] = _pod(obj)["containers"][0]
    return container


def _sc(obj: Manifest) -> dict[str, Any]:
    context: dict[str, Any] = _container(obj)["securityContext"]
    return context


K1_BREAKS: dict[str, Callable[[Manifest], object]] = {
    "runs as root": lambda d: _pod(d)["securityContext"].update(runAsNonRoot=False),
    "runAsNonRoot unset": lambda d: _pod(d)["securityContext"].pop("runAsNonRoot"),
    "container overrides runAsNonRoot": lambda d: _sc(d).update(runAsNonRoot=False),
    "uid 0": lambda d: _sc(d).update(runAsUser=0),
    "privilege escalation": lambda d: _sc(d).update(allowPrivilegeEscalation=True),
    "escalation unset": lambda d: _sc(d).pop("allowPrivilegeEscalation"),
    "no drop ALL": lambda d: _sc(d).update(capabilities={"drop": ["NET_RAW"]}),
    "adds SYS_ADMIN": lambda d: _sc(d)["capabilities"].update(add=["SYS_ADMIN"]),
    "seccomp unset": lambda d: _pod(d)["securityContext"].pop("seccompProfile"),
    "seccomp unconfined": lambda d: _sc(d).update(seccompProfile={"type": "Unconfined"}),
    "privileged": lambda d: _sc(d).update(privileged=True),
    "hostPath": lambda d: _pod(d)["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    "nfs volume": lambda d: _pod(d)["volumes"].append({"name": "n", "nfs": {"server": "x"}}),
    "hostNetwork": lambda d: _pod(d).update(hostNetwork=True),
    "hostPID": lambda d: _pod(d).update(hostPID=True),
    "hostIPC": lambda d: _pod(d).update(hostIPC=True),
    "hostPort": lambda d: _container(d)["ports"][0].update(hostPort=8080),
    "unsafe sysctl": lambda d: _pod(d)["securityContext"].update(
        sysctls=[{"name": "kernel.msgmax", "value": "1"}]
    ),
    "writable root filesystem": lambda d: _sc(d).update(readOnlyRootFilesystem=False),
    "token mounted": lambda d: _pod(d).update(automountServiceAccountToken=True),
    "token by default": lambda d: _pod(d).pop("automountServiceAccountToken"),
    "bare init container": lambda d: _pod(d).update(initContainers=[{"name": "i", "image": "i"}]),
}


def test_k1_the_compliant_pod_passes() -> None:
    assert restricted_violations([compliant_deployment()]) == []
    # A pod leaving the token setting to its ServiceAccount passes when the account turns it off.
    relying = compliant_deployment()
    _pod(relying).pop("automountServiceAccountToken")
    _pod(relying)["serviceAccountName"] = "quiet"
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "quiet"}}
    assert (
        restricted_violations([relying, {**account, "automountServiceAccountToken": False}]) == []
    )


@pytest.mark.parametrize("case", sorted(K1_BREAKS))
def test_k1_catches(case: str) -> None:
    bad = compliant_deployment()
    K1_BREAKS[case](bad)
    assert restricted_violations([bad]) != [], case


def test_k1_catches_a_hook_job_of_the_chart(charts: Charts) -> None:
    objects = copy.deepcopy(charts.render("default"))
    job = next(o for o in objects if o["kind"] == "Job")
    assert "helm.sh/hook" in job["metadata"]["annotations"]
    _sc(job)["allowPrivilegeEscalation"] = True
    assert restricted_violations(objects) == [
        f"Job/{job['metadata']['name']}: containers[migrate]: allowPrivilegeEscalation is not false"
    ]


# --- 3. K2: NetworkPolicies against the declared call graph -------------------------------------

PORTS = {
    "user": 8101,
    "product": 8102,
    "cart": 8103,
    "order": 8104,
    "payment": 8105,
    "notification": 8106,
    "gateway": 8080,
}
# Who calls whom, from the design (README's diagram, RELIABILITY.md K2), not from the chart.
CALLS = {
    "gateway": ("user", "product", "cart", "order", "notification"),
    "order": ("product", "cart", "payment", "user"),
    "cart": ("product", "user"),
    "product": ("user",),
    "payment": ("user",),
    "notification": ("user",),
    "user": (),
}
BROKER_CLIENTS = ("order", "payment", "notification")

# What the release's pods meet besides each other: cluster DNS, an ingress controller,
# Prometheus, a Collector, Consul's server pods, and pods and addresses that must be refused - a
# stranger in the namespace, another release's order pods, a pod with our labels in another
# namespace, Consul's other pods, the internet - and the external database and broker of the
# external-deps scenario.
PROBES = (
    Endpoint("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, "10.96.0.10"),
    Endpoint(
        "ingress-nginx", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, "10.244.9.1"
    ),
    Endpoint("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, "10.244.9.2"),
    Endpoint(
        "otel-collector",
        "observability",
        {"app.kubernetes.io/name": "opentelemetry-collector"},
        "10.244.9.3",
    ),
    Endpoint("stranger", NAMESPACE, {"app": "stranger"}, "10.244.9.4"),
    Endpoint(
        "other-release-order",
        NAMESPACE,
        {"app.kubernetes.io/name": "order", "app.kubernetes.io/instance": "other"},
        "10.244.9.5",
    ),
    Endpoint(
        "order-in-other-namespace",
        "default",
        {"app.kubernetes.io/name": "order", "app.kubernetes.io/instance": RELEASE},
        "10.244.9.6",
    ),
    Endpoint("consul-server", "consul", {"app": "consul", "component": "server"}, "10.244.9.7"),
    Endpoint("consul-injector", "consul", {"app": "consul", "component": "connect"}, "10.244.9.8"),
    Endpoint("internet", None, {}, "203.0.113.10"),
    Endpoint("external-postgresql", None, {}, "192.0.2.10"),
    Endpoint("external-nats", None, {}, "192.0.2.20"),
)


def declared_edges(
    *,
    database: str = "postgresql",
    broker: str = "nats",
    public_entry: str | None = None,
    scraper: str | None = None,
    collector: str | None = None,
    consul: str | None = None,
) -> set[Edge]:
    """The call graph of the design as (from, to, port, protocol)."""
    edges: set[Edge] = set()
    for caller, callees in CALLS.items():
        edges |= {(caller, callee, PORTS[callee], "TCP") for callee in callees}
    for service in DATABASE_SERVICES:
        for pod in (service, f"{service}-migrate"):
            edges.add((pod, database, 5432, "TCP"))
    edges |= {(service, broker, 4222, "TCP") for service in BROKER_CLIENTS}
    # Every pod that calls anything resolves names. PostgreSQL and NATS call no one: no egress
    # at all, DNS included.
    for pod in (*SERVICES, *(f"{s}-migrate" for s in DATABASE_SERVICES)):
        edges |= {(pod, "kube-dns", 53, "UDP"), (pod, "kube-dns", 53, "TCP")}
    if public_entry:
        edges.add((public_entry, "gateway", PORTS["gateway"], "TCP"))
    if scraper:
        edges |= {(scraper, service, PORTS[service], "TCP") for service in SERVICES}
    if collector:
        edges |= {(service, collector, 4318, "TCP") for service in SERVICES}
    if consul:
        # The services call Consul's HTTP API; its server agent runs their HTTP checks.
        edges |= {(service, consul, 8500, "TCP") for service in SERVICES}
        edges |= {(consul, service, PORTS[service], "TCP") for service in SERVICES}
    return edges


DECLARED = {
    "default": declared_edges(),
    "development": declared_edges(),
    # The kind values let the ingress controller reach the gateway, the only public entry.
    "kind": declared_edges(public_entry="ingress-nginx"),
    "observability": declared_edges(
        public_entry="ingress-nginx", scraper="prometheus", collector="otel-collector"
    ),
    "external-deps": declared_edges(database="external-postgresql", broker="external-nats"),
    "consul": declared_edges(consul="consul-server"),
}


def network_of(objects: list[Manifest]) -> tuple[Network, list[Endpoint]]:
    pods = release_endpoints(objects, NAMESPACE)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    return Network(policies, [*pods, *PROBES], NAMESPACE), pods


def k2_problems(
    objects: list[Manifest], declared: set[Edge]
) -> tuple[list[str], list[Edge], list[Edge], int]:
    network, pods = network_of(objects)
    deny = default_deny_problems(network.policies, pods, f"{RELEASE}-default-deny", NAMESPACE)
    allowed = network.edges()
    extra, missing = compare_edges(allowed, declared)
    return deny, extra, missing, len(allowed)


@pytest.mark.parametrize("scenario", sorted(DECLARED))
def test_k2_network_policies_allow_exactly_the_call_graph(
    charts: Charts, scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deny, extra, missing, allowed = k2_problems(charts.render(scenario), DECLARED[scenario])
    report(
        capsys,
        f"K2 {scenario}: allowed edges {allowed}, declared {len(DECLARED[scenario])}, "
        f"extra {len(extra)}, missing {len(missing)}, default-deny problems {len(deny)}",
    )
    assert deny == []
    assert extra == []
    assert missing == []


def test_k2_covers_every_declared_scenario() -> None:
    assert set(DECLARED) <= set(SCENARIOS)
    assert {"default", "kind"} <= set(DECLARED)


def _policy(objects: list[Manifest], name: str) -> dict[str, Any]:
    policy: dict[str, Any] = next(
        o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name
    )
    return policy


@pytest.fixture
def default_objects(charts: Charts) -> list[Manifest]:
    return copy.deepcopy(charts.render("default"))


def test_k2_catches_a_missing_default_deny(default_objects: list[Manifest]) -> None:
    objects = [o for o in default_objects if o["metadata"]["name"] != f"{RELEASE}-default-deny"]
    deny, _, _, _ = k2_problems(objects, DECLARED["default"])
    assert deny == [f"no NetworkPolicy {RELEASE}-default-deny"]


def test_k2_catches_a_default_deny_that_misses_pods(default_objects: list[Manifest]) -> None:
    policy = _policy(default_objects, f"{RELEASE}-default-deny")
    policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] = "service"
    deny, _, _, _ = k2_problems(default_objects, DECLARED["default"])
    assert f"{RELEASE}-default-deny does not select the pods of postgresql" in deny
    assert f"{RELEASE}-default-deny does not select the pods of order-migrate" in deny


def test_k2_catches_an_extra_edge(default_objects: list[Manifest]) -> None:
    # cart may now call payment: cart's egress and payment's ingress both let it.
    _policy(default_objects, f"{RELEASE}-cart")["spec"]["egress"].append(
        {
            "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "payment"}}}],
            "ports": [{"port": 8105}],
        }
    )
    payment = _policy(default_objects, f"{RELEASE}-payment")
    payment["spec"]["ingress"][0]["from"].append(
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "cart"}}}
    )
    _, extra, missing, _ = k2_problems(default_objects, DECLARED["default"])
    assert extra == [("cart", "payment", 8105, "TCP")]
    assert missing == []


def test_k2_one_side_alone_makes_no_edge(default_objects: list[Manifest]) -> None:
    _policy(default_objects, f"{RELEASE}-cart")["spec"]["egress"].append(
        {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "payment"}}}]}
    )
    _, extra, missing, _ = k2_problems(default_objects, DECLARED["default"])
    assert (extra, missing) == ([], [])


def test_k2_catches_a_missing_edge(default_objects: list[Manifest]) -> None:
    policy = _policy(default_objects, f"{RELEASE}-notification")
    policy["spec"]["egress"] = [
        rule for rule in policy["spec"]["egress"] if rule["ports"][0]["port"] != 4222
    ]
    _, extra, missing, _ = k2_problems(default_objects, DECLARED["default"])
    assert (extra, missing) == ([], [("notification", "nats", 4222, "TCP")])


def test_k2_catches_a_rule_open_to_everyone(default_objects: list[Manifest]) -> None:
    # `to: []` (or no `to`) is every destination: what an empty egressTo list would render.
    _policy(default_objects, f"{RELEASE}-order")["spec"]["egress"].append(
        {"to": [], "ports": [{"port": 443}]}
    )
    _, extra, _, _ = k2_problems(default_objects, DECLARED["default"])
    assert ("order", "internet", 443, "TCP") in extra
    assert ("order", "stranger", 443, "TCP") in extra


def test_k2_catches_a_broad_ingress(default_objects: list[Manifest]) -> None:
    # A namespaceSelector of {} alone is every pod of every namespace.
    _policy(default_objects, f"{RELEASE}-user")["spec"]["ingress"][0]["from"].append(
        {"namespaceSelector": {}}
    )
    _, extra, _, _ = k2_problems(default_objects, DECLARED["default"])
    assert ("order-in-other-namespace", "user", 8101, "TCP") in extra
    assert ("other-release-order", "user", 8101, "TCP") in extra
    assert ("stranger", "user", 8101, "TCP") in extra


def test_k2_peer_semantics() -> None:
    labels = {"app": "x"}
    assert selector_matches({}, labels)
    assert selector_matches(
        {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]}, labels
    )
    assert not selector_matches(
        {"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, labels
    )
    source = Endpoint("a", "ns1", {"app": "a"}, "10.0.0.1")
    target = Endpoint("b", "ns2", {"app": "b"}, "10.0.0.2", (("http", 80, "TCP"),), True)
    both = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ns1"}},
        "podSelector": {"matchLabels": {"app": "a"}},
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "ns2"},
        "spec": {"podSelector": {}, "ingress": [{"from": [both], "ports": [{"port": "http"}]}]},
    }
    net = Network([policy], [source, target], "ns2")
    assert net.allows(source, target, 80, "TCP")
    assert not net.allows(source, target, 81, "TCP")
    assert not net.allows(source, target, 80, "UDP")
    # The same peer without the namespaceSelector means target's own namespace only.
    del both["namespaceSelector"]
    assert not Network([policy], [source, target], "ns2").allows(source, target, 80, "TCP")


def test_k2_tracing_without_egress_peers_is_refused(charts: Charts) -> None:
    # An empty `to` would be read as every destination on the OTLP port.
    result = charts.template("sweetslice", sets=["global.tracing.enabled=true"])
    assert result.returncode != 0
    assert "global.tracing.egressTo must name the collector" in result.stderr


# --- 4. K4: resources, HPA, PDB, probes ---------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_k4_resources_scaling_and_probes(
    charts: Charts, scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = charts.render(scenario)
    missing = resource_problems(objects) + scaling_problems(objects, SERVICES)
    report(capsys, f"K4 {scenario}: missing {len(missing)}")
    assert missing == []


def _service_objects(charts: Charts) -> list[Manifest]:
    return copy.deepcopy(charts.render("default"))


def _find(objects: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
    )
    return found


K4_BREAKS: dict[str, Callable[[list[Manifest]], object]] = {
    "no memory limit": lambda objs: _container(_find(objs, "Deployment", f"{RELEASE}-cart"))[
        "resources"
    ]["limits"].pop("memory"),
    "no requests in a hook job": lambda objs: _container(
        _find(objs, "Job", f"{RELEASE}-cart-migrate")
    )["resources"].pop("requests"),
    "no resources in the database": lambda objs: _container(
        _find(objs, "StatefulSet", f"{RELEASE}-postgresql")
    ).pop("resources"),
    "an init container without resources": lambda objs: _pod(
        _find(objs, "Deployment", f"{RELEASE}-user")
    ).update(initContainers=[{"name": "wait", "image": "x"}]),
    "no HPA": lambda objs: objs.remove(_find(objs, "HorizontalPodAutoscaler", f"{RELEASE}-order")),
    "HPA on memory only": lambda objs: _find(objs, "HorizontalPodAutoscaler", f"{RELEASE}-order")[
        "spec"
    ]["metrics"][0]["resource"].update(name="memory"),
    "HPA without scaleDown": lambda objs: _find(
        objs, "HorizontalPodAutoscaler", f"{RELEASE}-order"
    )["spec"]["behavior"].pop("scaleDown"),
    "HPA of an old API": lambda objs: _find(
        objs, "HorizontalPodAutoscaler", f"{RELEASE}-order"
    ).update(apiVersion="autoscaling/v1"),
    "PDB selecting other pods": lambda objs: _find(
        objs, "PodDisruptionBudget", f"{RELEASE}-payment"
    )["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "paymnet"}),
    "liveness on /readyz": lambda objs: _container(_find(objs, "Deployment", f"{RELEASE}-gateway"))[
        "livenessProbe"
    ]["httpGet"].update(path="/readyz"),
    "no readiness probe": lambda objs: _container(
        _find(objs, "Deployment", f"{RELEASE}-gateway")
    ).pop("readinessProbe"),
    "no Deployment": lambda objs: objs.remove(_find(objs, "Deployment", f"{RELEASE}-product")),
}


@pytest.mark.parametrize("case", sorted(K4_BREAKS))
def test_k4_catches(charts: Charts, case: str) -> None:
    objects = _service_objects(charts)
    K4_BREAKS[case](objects)
    assert resource_problems(objects) + scaling_problems(objects, SERVICES) != [], case


# --- 5. K3: checkov -----------------------------------------------------------------------------

# Checks that fail on the rendered charts, each with why it is skipped.
CHECKOV_SKIPS = {
    "CKV_K8S_21": "helm template leaves metadata.namespace unset; `helm install -n sweetslice` "
    "places every object in the release namespace, never `default`",
    "CKV_K8S_15": "images are pinned by version tag and kind side-loads the service images "
    "(skaffold); Always would make kind pull images that are in no registry",
    "CKV_K8S_43": "postgres and nats take image.digest, but no digest is set by default: this "
    "machine reaches no registry to read one; the service images are built per release by "
    "skaffold and pinned by tag",
}


def test_k3_every_skip_has_a_reason() -> None:
    for check, reason in CHECKOV_SKIPS.items():
        assert check.startswith("CKV_K8S_") and len(reason) > 20, check


@pytest.mark.parametrize("scenario", CHECKOV_SCENARIOS)
def test_k3_checkov_passes(
    checkov_run: CheckovRun, scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = checkov_run.failed.get(f"{scenario}.yaml", [])
    report(
        capsys,
        f"K3 checkov {scenario}: passed {checkov_run.passed.get(f'{scenario}.yaml', 0)}, "
        f"failed {len(failed)}, skipped check ids {len(CHECKOV_SKIPS)} "
        f"({', '.join(sorted(CHECKOV_SKIPS))})",
    )
    assert checkov_run.passed.get(f"{scenario}.yaml", 0) > 100, "checkov checked nothing"
    assert [(c["check_id"], c["resource"], c["check_name"]) for c in failed] == []


def test_k3_checkov_catches_a_bad_manifest(checkov_run: CheckovRun) -> None:
    caught = {c["check_id"] for c in checkov_run.failed.get("canary.yaml", [])}
    # privileged, privilege escalation, host network, root, no resources
    assert {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_19", "CKV_K8S_23", "CKV_K8S_10"} <= caught


# --- 6. P7: footprint ---------------------------------------------------------------------------

CPU_BUDGET = Decimal("1.5")
MEMORY_BUDGET = Decimal("1.5") * 2**30


def test_p7_footprint_of_the_kind_values(
    charts: Charts, capsys: pytest.CaptureFixture[str]
) -> None:
    used = footprint(charts.render("kind"))
    lines = [
        f"  {name}: {replicas} x ({cpu * 1000:.0f}m, {memory / 2**20:.0f}Mi)"
        for name, replicas, cpu, memory in used.counted
    ]
    lines += [
        f"  hook (not counted) {name}: ({cpu * 1000:.0f}m, {memory / 2**20:.0f}Mi)"
        for name, cpu, memory in used.hooks
    ]
    report(
        capsys,
        "P7 footprint (kind values): requests "
        f"cpu {used.cpu:.3f} cores, memory {used.memory / 2**30:.3f} GiB "
        f"({used.memory / 2**20:.0f} MiB); budget 1.5 CPU, 1.5 GiB\n" + "\n".join(lines),
    )
    assert len(used.counted) == len(SERVICES) + 2  # the services, PostgreSQL, NATS
    assert footprint_problems(used, CPU_BUDGET, MEMORY_BUDGET) == []


def test_p7_footprint_counts_replicas_and_catches_excess() -> None:
    web = compliant_deployment()  # 100m, 128Mi a pod
    web["spec"]["replicas"] = 5
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "app"}, "minReplicas": 3},
    }
    db = copy.deepcopy(compliant_deployment())
    db["kind"], db["metadata"]["name"], db["spec"]["replicas"] = "StatefulSet", "db", 2
    _pod(db)["initContainers"] = [
        {"name": "big-init", "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}}}
    ]
    job = copy.deepcopy(compliant_deployment())
    job["kind"], job["metadata"] = (
        "Job",
        {"name": "migrate", "annotations": {"helm.sh/hook": "post-install"}},
    )
    used = footprint([web, hpa, db, job])
    # 3 x 100m + 2 x max(100m, 1500m) = 3.3 cores; 3 x 128Mi + 2 x 1Gi
    assert used.cpu == Decimal("3.3")
    assert used.memory == 3 * 128 * 2**20 + 2 * 2**30
    assert [h[0] for h in used.hooks] == ["Job/migrate"]
    problems = footprint_problems(used, CPU_BUDGET, MEMORY_BUDGET)
    assert len(problems) == 2
    plain_job = copy.deepcopy(job)
    plain_job["metadata"] = {"name": "once"}
    assert footprint_problems(footprint([plain_job]), CPU_BUDGET, MEMORY_BUDGET) == [
        "Job/once: makes pods but is not counted"
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", "0.1"),
        ("1", "1"),
        ("0.5", "0.5"),
        ("128Mi", str(128 * 2**20)),
        ("1G", "1000000000"),
    ],
)
def test_quantities(text: str, value: str) -> None:
    assert quantity(text) == Decimal(value)


# --- 7. checksum annotations --------------------------------------------------------------------


def test_a_config_change_rolls_only_that_service(charts: Charts) -> None:
    before = charts.template("sweetslice")
    after = charts.template("sweetslice", sets=["order.config.saga_timeout_seconds=20"])
    assert before.returncode == 0 and after.returncode == 0, before.stderr + after.stderr
    old = template_annotations(parse_manifests(before.stdout), "checksum/config")
    new_objects = parse_manifests(after.stdout)
    new = template_annotations(new_objects, "checksum/config")
    assert set(old) == set(SERVICES) and all(old.values()), old
    assert changed(old, new) == {"order"}
    config = _find(new_objects, "ConfigMap", f"{RELEASE}-order")
    assert config["data"]["SWEETSLICE_ORDER_SAGA_TIMEOUT_SECONDS"] == "20"


def test_checksum_comparison_sees_a_change() -> None:
    assert changed({"a": "1", "b": "2"}, {"a": "1", "b": "3"}) == {"b"}
    assert changed({"a": "1"}, {"a": "1", "c": "1"}) == {"c"}
