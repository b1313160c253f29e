"""Consul discovery on the charts (issue 7): one umbrella value, global.consul.enabled, moves every
service - the gateway too - from Kubernetes DNS to Consul.

What the services read is a contract with their side (shopkit's settings): DISCOVERY, the
CONSUL_* settings, ADVERTISE_ADDRESS from the pod's IP, the ACL token as a file in the secrets
volume, and `python -m shop_<name>.main deregister --drain-seconds N` as the preStop hook. Each
is checked here for every service Deployment, with the umbrella's defaults and with values of
our own (so nothing is merely hard-coded), and the NetworkPolicies are checked to let Consul's
server pods run the services' HTTP checks.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the lock
from shopkit.launcher import DEFAULT_PORTS
from shopkit.settings import ServiceSettings

from tests.deploy.charts_support import (
    DATABASE_SERVICES,
    NAMESPACE,
    RELEASE,
    ROOT,
    SERVICE_CHART_SETS,
    SERVICES,
    Charts,
    scenario_values,
)
from tests.deploy.cluster import Cluster
from tests.deploy.manifests import (
    Endpoint,
    Manifest,
    Network,
    changed,
    parse_manifests,
    release_endpoints,
    restricted_violations,
    template_annotations,
)

CONSUL_SCENARIO = ROOT / "charts" / "sweetslice" / "ci" / "consul.yaml"
KIND_VALUES = ROOT / "k8s" / "values-kind.yaml"
CONSUL_OVERLAY = ROOT / "k8s" / "values-consul.yaml"
CONSUL_ADDON = ROOT / "k8s" / "addons" / "consul.yaml"
# The charts listen where `make up` does.
PORTS = DEFAULT_PORTS
# The service side's defaults (shopkit's settings); the charts' defaults must say the same.
CONTRACT_DEFAULTS = {
    name.upper(): f"{ServiceSettings.model_fields[name].default:g}"
    for name in (
        "consul_check_interval_seconds",
        "consul_check_timeout_seconds",
        "consul_deregister_after_seconds",
        "consul_wait_seconds",
    )
}
# Consul's server pods as HashiCorp's chart labels them, and another pod of its namespace.
CONSUL_SERVER = Endpoint("consul-server", "consul", {"app": "consul", "component": "server"})
CONSUL_OTHER = Endpoint("consul-injector", "consul", {"app": "consul", "component": "connect"})


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _render(
    charts: Charts, values: Sequence[Path] = (CONSUL_SCENARIO,), sets: Sequence[str] = ()
) -> list[Manifest]:
    result = charts.template("sweetslice", values, sets)
    assert result.returncode == 0, result.stderr
    return parse_manifests(result.stdout)


def _find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _prefix(service: str) -> str:
    return f"SWEETSLICE_{service.upper()}_"


def _deployment(objects: list[Manifest], service: str) -> Manifest:
    return _find(objects, "Deployment", f"{RELEASE}-{service}")


def _container(workload: Manifest) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = container
    return found


def _settings(objects: list[Manifest], service: str) -> dict[str, str]:
    """What the service's process reads from the ConfigMap its Deployment names."""
    container = _container(_deployment(objects, service))
    (source,) = container["envFrom"]
    data: dict[str, str] = _find(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
    return data


def _secret_files(workload: Manifest) -> dict[str, tuple[str, str]]:
    """The files of the pod's projected secrets volume: path -> (Secret, key)."""
    files: dict[str, tuple[str, str]] = {}
    for volume in workload["spec"]["template"]["spec"]["volumes"]:
        if volume["name"] != "secrets":
            continue
        for source in volume["projected"]["sources"]:
            for item in source["secret"]["items"]:
                files[item["path"]] = (source["secret"]["name"], item["key"])
    return files


def _pre_stop(objects: list[Manifest], service: str) -> dict[str, Any]:
    hook: dict[str, Any] = _container(_deployment(objects, service))["lifecycle"]["preStop"]
    return hook


def _deregister(service: str, seconds: int) -> dict[str, Any]:
    command = ["python", "-m", f"shop_{service}.main", "deregister", "--drain-seconds"]
    return {"exec": {"command": [*command, str(seconds)]}}


def _service_defaults(service: str) -> dict[str, Any]:
    values: dict[str, Any] = _load(ROOT / "charts" / service / "values.yaml")
    return values


# --- on: every service ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def consul_on(charts: Charts) -> list[Manifest]:
    return charts.render("consul")


@pytest.mark.parametrize("service", SERVICES)
def test_on_the_settings_switch_the_service_to_consul(
    consul_on: list[Manifest], service: str
) -> None:
    scenario = _load(CONSUL_SCENARIO)["global"]["consul"]
    settings = _settings(consul_on, service)
    prefix = _prefix(service)
    assert settings[f"{prefix}DISCOVERY"] == "consul"
    assert settings[f"{prefix}CONSUL_HTTP_ADDR"] == scenario["address"]
    for name, value in CONTRACT_DEFAULTS.items():
        assert settings[f"{prefix}{name}"] == value, name
    # The token is a secret: never a setting in the ConfigMap.
    assert not [key for key in settings if "TOKEN" in key]
    # Peers are still named: in Consul by service name, by URL for anything else.
    for peer in _service_defaults(service)["calls"]:
        assert f"{prefix}{peer['name'].upper()}_URL" in settings


@pytest.mark.parametrize("service", SERVICES)
def test_on_each_pod_advertises_its_own_ip(consul_on: list[Manifest], service: str) -> None:
    container = _container(_deployment(consul_on, service))
    assert container["env"] == [
        {
            "name": f"{_prefix(service)}ADVERTISE_ADDRESS",
            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
        }
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_on_the_pod_leaves_consul_before_sigterm(consul_on: list[Manifest], service: str) -> None:
    defaults = _service_defaults(service)
    assert _pre_stop(consul_on, service) == _deregister(service, defaults["preStopSleepSeconds"])
    # The hook and the drain after SIGTERM both fit in the grace period.
    pod = _deployment(consul_on, service)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > defaults["preStopSleepSeconds"]


@pytest.mark.parametrize("service", SERVICES)
def test_on_the_token_is_a_file_of_the_secrets_volume(
    consul_on: list[Manifest], service: str
) -> None:
    token = _load(CONSUL_SCENARIO)["global"]["consul"]["token"]
    deployment = _deployment(consul_on, service)
    files = _secret_files(deployment)
    path = f"{_prefix(service)}CONSUL_TOKEN"
    assert files[path] == (token["existingSecret"], token["key"])
    # Where shopkit looks for it: the folder the volume is mounted at.
    mounts = {m["name"]: m for m in _container(deployment)["volumeMounts"]}
    directory = _settings(consul_on, service)["SWEETSLICE_SECRETS_DIR"]
    assert mounts["secrets"] == {"name": "secrets", "mountPath": directory, "readOnly": True}
    assert all(path not in json.dumps(env) for env in _container(deployment).get("env", []))


@pytest.mark.parametrize("service", DATABASE_SERVICES)
def test_on_the_migration_job_is_not_handed_consuls_token(
    consul_on: list[Manifest], service: str
) -> None:
    job = _find(consul_on, "Job", f"{RELEASE}-{service}-migrate")
    files = _secret_files(job)
    assert f"{_prefix(service)}DATABASE_URL" in files
    assert not [path for path in files if path.endswith("CONSUL_TOKEN")]
    # It registers nothing: no address to advertise, and no preStop hook.
    assert not [e for e in _container(job)["env"] if e["name"].endswith("ADVERTISE_ADDRESS")]
    assert "lifecycle" not in _container(job)


@pytest.mark.parametrize("service", SERVICES)
def test_on_consuls_server_pods_may_check_the_service(
    consul_on: list[Manifest], service: str
) -> None:
    peers = _load(CONSUL_SCENARIO)["global"]["consul"]["egressTo"]
    policy = _find(consul_on, "NetworkPolicy", f"{RELEASE}-{service}")["spec"]
    port = [{"port": PORTS[service], "protocol": "TCP"}]
    assert {"from": peers, "ports": port} in policy["ingress"]
    assert {"to": peers, "ports": [{"port": 8500, "protocol": "TCP"}]} in policy["egress"]
    # The same answer from the policy model the K2 tests use: the server pods reach the
    # service's port and no other; Consul's other pods reach nothing.
    pods = release_endpoints(consul_on, NAMESPACE)
    network = Network(
        [o for o in consul_on if o["kind"] == "NetworkPolicy"],
        [*pods, CONSUL_SERVER, CONSUL_OTHER],
        NAMESPACE,
    )
    target = next(p for p in pods if p.name == service)
    assert network.allows(CONSUL_SERVER, target, PORTS[service], "TCP")
    assert not network.allows(CONSUL_SERVER, target, PORTS[service] + 1, "TCP")
    assert not network.allows(CONSUL_OTHER, target, PORTS[service], "TCP")
    assert network.allows(target, CONSUL_SERVER, 8500, "TCP")


def test_on_migration_pods_get_no_way_to_consul(consul_on: list[Manifest]) -> None:
    pods = release_endpoints(consul_on, NAMESPACE)
    network = Network(
        [o for o in consul_on if o["kind"] == "NetworkPolicy"], [*pods, CONSUL_SERVER], NAMESPACE
    )
    migrations = [p for p in pods if p.name.endswith("-migrate")]
    assert len(migrations) == len(DATABASE_SERVICES)
    for pod in migrations:
        assert not network.allows(pod, CONSUL_SERVER, 8500, "TCP"), pod.name
        assert not network.allows(CONSUL_SERVER, pod, 8101, "TCP"), pod.name


def test_on_the_platform_stays_restricted(consul_on: list[Manifest]) -> None:
    assert restricted_violations(consul_on) == []


# --- on, with values of our own ----------------------------------------------------------------

OWN_CONSUL = {
    "address": "http://consul.example.test:8500",
    "checkIntervalSeconds": 15,
    "checkTimeoutSeconds": 4,
    "deregisterAfterSeconds": 180,
    "waitSeconds": 55,
    # Rendered with the release's name, like the chart's other Secret names.
    "token": {"existingSecret": "{{ .Release.Name }}-consul-acl", "key": "acl-token"},
}
# A drain of its own for each service (the default is 5).
DRAIN = {service: 7 + index for index, service in enumerate(SERVICES)}


@pytest.fixture(scope="module")
def consul_own(charts: Charts, tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    values = tmp_path_factory.mktemp("consul-own") / "values.yaml"
    own: dict[str, Any] = {"global": {"consul": OWN_CONSUL}}
    own.update({service: {"preStopSleepSeconds": seconds} for service, seconds in DRAIN.items()})
    values.write_text(json.dumps(own))
    return _render(charts, [CONSUL_SCENARIO, values])


@pytest.mark.parametrize("service", SERVICES)
def test_own_values_reach_every_service(consul_own: list[Manifest], service: str) -> None:
    settings = _settings(consul_own, service)
    prefix = _prefix(service)
    assert settings[f"{prefix}CONSUL_HTTP_ADDR"] == "http://consul.example.test:8500"
    assert settings[f"{prefix}CONSUL_CHECK_INTERVAL_SECONDS"] == "15"
    assert settings[f"{prefix}CONSUL_CHECK_TIMEOUT_SECONDS"] == "4"
    assert settings[f"{prefix}CONSUL_DEREGISTER_AFTER_SECONDS"] == "180"
    assert settings[f"{prefix}CONSUL_WAIT_SECONDS"] == "55"
    assert _pre_stop(consul_own, service) == _deregister(service, DRAIN[service])
    files = _secret_files(_deployment(consul_own, service))
    assert files[f"{prefix}CONSUL_TOKEN"] == (f"{RELEASE}-consul-acl", "acl-token")


def test_without_a_token_no_token_file(charts: Charts) -> None:
    # The kind overlay: the demo Consul runs without ACLs.
    objects = _render(charts, [KIND_VALUES, CONSUL_OVERLAY])
    for service in SERVICES:
        deployment = _deployment(objects, service)
        assert not [p for p in _secret_files(deployment) if p.endswith("CONSUL_TOKEN")], service
        assert _settings(objects, service)[f"{_prefix(service)}DISCOVERY"] == "consul"
    # The gateway has no other secret: it gets no secrets volume at all.
    gateway = _deployment(objects, "gateway")
    assert "secrets" not in {v["name"] for v in gateway["spec"]["template"]["spec"]["volumes"]}
    assert "SWEETSLICE_SECRETS_DIR" not in _settings(objects, "gateway")


# --- off --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["default", "kind"])
def test_off_every_service_uses_kubernetes_dns_and_sleeps(charts: Charts, scenario: str) -> None:
    # A token named while Consul is off goes nowhere.
    objects = _render(
        charts, scenario_values()[scenario], ["global.consul.token.existingSecret=unused"]
    )
    for service in SERVICES:
        settings = _settings(objects, service)
        prefix = _prefix(service)
        assert settings[f"{prefix}DISCOVERY"] == "dns", service
        assert not [key for key in settings if "CONSUL" in key], service
        container = _container(_deployment(objects, service))
        assert "env" not in container, service
        seconds = _service_defaults(service)["preStopSleepSeconds"]
        assert _pre_stop(objects, service) == {"sleep": {"seconds": seconds}}, service
        assert "unused" not in json.dumps(_deployment(objects, service)), service
        policy = _find(objects, "NetworkPolicy", f"{RELEASE}-{service}")
        assert "consul" not in json.dumps(policy), service


def test_one_value_switches_every_service(charts: Charts, tmp_path: Path) -> None:
    """With Consul's pods named but Consul off, global.consul.enabled alone moves every service
    over: nothing needs setting per service."""
    prepared = tmp_path / "prepared.yaml"
    consul = _load(CONSUL_SCENARIO)["global"]["consul"]
    prepared.write_text(json.dumps({"global": {"consul": {**consul, "enabled": False}}}))
    off = _render(charts, [prepared])
    on = _render(charts, [prepared], ["global.consul.enabled=true"])
    for service in SERVICES:
        prefix = _prefix(service)
        assert _settings(off, service)[f"{prefix}DISCOVERY"] == "dns"
        assert _settings(on, service)[f"{prefix}DISCOVERY"] == "consul"
        assert "sleep" in _pre_stop(off, service) and "exec" in _pre_stop(on, service)
        assert "env" not in _container(_deployment(off, service))
        assert "env" in _container(_deployment(on, service))


# --- what is refused ---------------------------------------------------------------------------

REFUSED = {
    "no Consul pods to allow": (["global.consul.enabled=true"], "global.consul.egressTo must"),
    "a check as long as its interval": (
        ["global.consul.checkTimeoutSeconds=10"],
        "checkTimeoutSeconds must be below checkIntervalSeconds",
    ),
    "a deregistration Consul would not honour": (
        ["global.consul.deregisterAfterSeconds=30"],
        "/global/consul/deregisterAfterSeconds': minimum",
    ),
    "a blocking wait past Consul's cap": (
        ["global.consul.waitSeconds=601"],
        "/global/consul/waitSeconds': maximum",
    ),
    "an address without a scheme": (
        ["global.consul.address=consul-server.consul:8500"],
        "/global/consul/address': 'consul-server.consul:8500' does not match",
    ),
    "a token without a key": (["global.consul.token.key="], "/global/consul/token/key': minLength"),
    "an unknown Consul setting": (
        ["global.consul.tokenSecret=x"],
        "additional properties 'tokenSecret' not allowed",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused(charts: Charts, case: str) -> None:
    sets, message = REFUSED[case]
    values = () if case == "no Consul pods to allow" else (CONSUL_SCENARIO,)
    result = charts.template("sweetslice", values, sets)
    assert result.returncode != 0, f"{case} was accepted"
    assert message in result.stderr, result.stderr


def test_without_network_policies_no_consul_pods_are_needed(charts: Charts) -> None:
    objects = _render(
        charts, (), ["global.consul.enabled=true", "global.networkPolicy.enabled=false"]
    )
    assert not [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert _settings(objects, "cart")["SWEETSLICE_CART_DISCOVERY"] == "consul"


# --- rolling ------------------------------------------------------------------------------------


def test_switching_consul_on_rolls_every_service(charts: Charts) -> None:
    off = template_annotations(_render(charts, ()), "checksum/config")
    on = template_annotations(_render(charts), "checksum/config")
    assert set(off) == set(SERVICES)
    assert changed(off, on) == set(SERVICES)


def test_naming_another_token_rolls_every_service(charts: Charts) -> None:
    # The Secret is the operator's, so its content is theirs to roll; its name is ours.
    before = template_annotations(_render(charts), "checksum/secret")
    after = template_annotations(
        _render(charts, sets=["global.consul.token.existingSecret=another"]), "checksum/secret"
    )
    assert changed(before, after) == set(SERVICES)


# --- a service chart alone ----------------------------------------------------------------------


@pytest.mark.parametrize("chart", ["gateway", "user"])
def test_a_service_chart_alone_takes_the_consul_values(
    charts: Charts, chart: str, tmp_path: Path
) -> None:
    values = tmp_path / "consul.yaml"
    consul = _load(CONSUL_SCENARIO)["global"]["consul"]
    values.write_text(
        json.dumps({"global": {"consul": {**consul, "token": {"existingSecret": "acl"}}}})
    )
    linted = charts.lint(chart, [values], SERVICE_CHART_SETS)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    rendered = charts.template(chart, [values], SERVICE_CHART_SETS)
    assert rendered.returncode == 0, rendered.stderr
    objects = parse_manifests(rendered.stdout)
    assert _pre_stop(objects, chart) == _deregister(chart, 5)
    files = _secret_files(_deployment(objects, chart))
    assert files[f"{_prefix(chart)}CONSUL_TOKEN"] == ("acl", "token")


# --- the kind overlay, the add-on, make consul-ui -----------------------------------------------


def _consul_release() -> dict[str, Any]:
    skaffold = _load(ROOT / "skaffold.yaml")
    patches = next(p["patches"] for p in skaffold["profiles"] if p["name"] == "consul")
    release: dict[str, Any] = next(
        p["value"]
        for p in patches
        if isinstance(p["value"], dict) and p["value"]["name"] == "consul"
    )
    return release


def test_the_kind_overlay_points_at_the_add_on(charts: Charts) -> None:
    release = _consul_release()
    addon = _load(CONSUL_ADDON)
    assert release["valuesFiles"] == ["k8s/addons/consul.yaml"]
    namespace, name = release["namespace"], addon["global"]["name"]
    overlay = _load(CONSUL_OVERLAY)["global"]["consul"]
    assert overlay["enabled"] is True
    # The server agent's HTTP API: the services register and run their checks there.
    assert overlay["address"] == f"http://{name}-server.{namespace}:8500"
    (peer,) = overlay["egressTo"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    # HashiCorp's chart labels its server pods app=<chart name>, component=server.
    assert peer["podSelector"] == {"matchLabels": {"app": "consul", "component": "server"}}
    # Without client agents and the mesh, the server agent is where checks run.
    assert addon["client"]["enabled"] is False
    assert addon["connectInject"]["enabled"] is False
    assert addon["ui"]["enabled"] is True
    objects = _render(charts, [KIND_VALUES, CONSUL_OVERLAY])
    for service in SERVICES:
        policy = _find(objects, "NetworkPolicy", f"{RELEASE}-{service}")["spec"]
        assert {"from": [peer], "ports": [{"port": PORTS[service], "protocol": "TCP"}]} in policy[
            "ingress"
        ], service


def test_make_consul_ui_forwards_the_add_ons_ui_on_loopback() -> None:
    release = _consul_release()
    name = _load(CONSUL_ADDON)["global"]["name"]
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^consul-ui:.*\n\t(.+)$", makefile, re.MULTILINE)
    assert recipe, "no consul-ui target"
    command = recipe.group(1).split()
    assert command[command.index("-n") + 1] == release["namespace"]
    forward = command.index("port-forward")
    # The chart's UI Service listens on 80 in front of the server's 8500.
    assert command[forward + 1 : forward + 3] == [f"service/{name}-ui", "8500:80"]
    assert command[command.index("--address") + 1] == "127.0.0.1"
    assert "make consul-ui" in (ROOT / "README.md").read_text()


# --- the API server -----------------------------------------------------------------------------


def test_the_api_server_admits_the_consul_platform(cluster: Cluster, charts: Charts) -> None:
    """A server-side dry run in a namespace enforcing `restricted`: the API server's validation
    (the exec hook, the downward-API variable, the projected token) and Pod Security admission
    accept every object."""
    namespace = "consul-values"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    cluster.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": labels},
            }
        )
    )
    cluster.wait_service_account(namespace)
    rendered = charts.template("sweetslice", [CONSUL_SCENARIO])
    assert rendered.returncode == 0, rendered.stderr
    objects = parse_manifests(rendered.stdout)
    applied = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
        input=rendered.stdout, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    assert "would violate PodSecurity" not in applied.stderr, applied.stderr
    accepted = json.loads(applied.stdout)
    items = accepted["items"] if accepted.get("kind") == "List" else [accepted]
    assert len(items) == len(objects)
    stored = {(o["kind"], o["metadata"]["name"]): o for o in items}
    for service in SERVICES:
        container = _container(stored[("Deployment", f"{RELEASE}-{service}")])
        # What the API server kept, after defaulting, is what the chart said.
        assert container["lifecycle"]["preStop"] == _deregister(service, 5)
        assert container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_a_chart_gives_is_one_the_service_reads(
    consul_on: list[Manifest], service: str
) -> None:
    """Settings ignore variables they do not know, so a misspelt name in a chart would be
    dropped without a word: every variable of the service's prefix, from its ConfigMap, its
    env entries and its secret files, must name a field of its settings class."""
    module = importlib.import_module(f"shop_{service}.settings")
    (cls,) = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, ServiceSettings) and c is not ServiceSettings
    ]
    prefix = _prefix(service)
    workload = _deployment(consul_on, service)
    names = [
        *_settings(consul_on, service),
        *(entry["name"] for entry in _container(workload).get("env", [])),
        *_secret_files(workload),
    ]
    ours = [name.removeprefix(prefix) for name in names if name.startswith(prefix)]
    assert ours, names
    # FIELD or FIELD__NESTED (resilience, say).
    unknown = [n for n in ours if n.lower().split("__")[0] not in cls.model_fields]
    assert not unknown, f"{cls.__name__} has no field for {unknown}"
