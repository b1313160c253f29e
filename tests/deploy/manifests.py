"""Pure checks of rendered Kubernetes manifests (no helm, no cluster): the validators of
RELIABILITY.md K1 (Pod Security Standard `restricted`), K2 (NetworkPolicy reachability against a
declared call graph), K4 (resources, HPA, PDB, probes) and PERFORMANCE.md P7 (footprint).

Each validator returns a list of findings (empty: the manifests pass), so a test can both assert
that the chart passes and that a crafted bad manifest is caught.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs in the lock

Manifest = dict[str, Any]

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
HOOK_ANNOTATION = "helm.sh/hook"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"


def parse_manifests(text: str) -> list[Manifest]:
    """The objects of a multi-document YAML stream (empty documents dropped). Raises when a
    document is not a mapping with apiVersion, kind and metadata.name."""
    objects: list[Manifest] = []
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"a document is not a mapping: {doc!r:.200}")
        for key in ("apiVersion", "kind"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise ValueError(f"a document has no {key}: {doc!r:.200}")
        name = (doc.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {doc['kind']} has no metadata.name")
        objects.append(doc)
    return objects


def ident(obj: Manifest) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def is_hook(obj: Manifest) -> bool:
    return HOOK_ANNOTATION in (obj["metadata"].get("annotations") or {})


@dataclass(frozen=True)
class PodTemplate:
    owner: str  # Kind/name of the workload
    kind: str
    labels: Mapping[str, str]
    spec: Mapping[str, Any]
    annotations: Mapping[str, str]


def pod_templates(objects: Iterable[Manifest]) -> list[PodTemplate]:
    """The pod template of every workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job -
    hook Jobs included - CronJob) and every bare Pod."""
    found: list[PodTemplate] = []
    for obj in objects:
        kind = obj["kind"]
        spec = obj.get("spec") or {}
        if kind in WORKLOAD_KINDS:
            template = spec.get("template") or {}
        elif kind == "CronJob":
            template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        elif kind == "Pod":
            template = obj
        else:
            continue
        meta = template.get("metadata") or {}
        found.append(
            PodTemplate(
                owner=ident(obj),
                kind=kind,
                labels=meta.get("labels") or {},
                spec=template.get("spec") or {},
                annotations=meta.get("annotations") or {},
            )
        )
    return found


def _containers(spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out: list[tuple[str, Mapping[str, Any]]] = []
    for field_name in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field_name) or []:
            out.append((f"{field_name}[{container.get('name')}]", container))
    return out


# --- K1: Pod Security Standard `restricted` (and our extras) ----------------------------------

RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset(
    {"container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
SECCOMP_OK = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_OK = frozenset({"RuntimeDefault", "Localhost"})


def restricted_violations(
    objects: Sequence[Manifest], service_accounts: Mapping[str, Manifest] | None = None
) -> list[str]:
    """Every way a pod template breaks the `restricted` Pod Security Standard (the baseline
    controls included), plus two rules of ours: a read-only root filesystem in every container
    and no service-account token in the pod. `service_accounts` (name -> object) lets a pod that
    leaves automountServiceAccountToken unset pass when its ServiceAccount turns it off; by
    default the ServiceAccounts among `objects` are used."""
    if service_accounts is None:
        service_accounts = {
            o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"
        }
    problems: list[str] = []
    for pod in pod_templates(objects):
        problems.extend(f"{pod.owner}: {p}" for p in _pod_violations(pod, service_accounts))
    return problems


def _pod_violations(pod: PodTemplate, service_accounts: Mapping[str, Manifest]) -> list[str]:
    spec = pod.spec
    out: list[str] = []
    psc: Mapping[str, Any] = spec.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            out.append(f"{host} is set")
    for volume in spec.get("volumes") or []:
        kinds = [k for k in volume if k != "name"]
        if "hostPath" in kinds:
            out.append(f"volume {volume.get('name')} is a hostPath")
        other = [k for k in kinds if k not in RESTRICTED_VOLUME_TYPES]
        if other:
            out.append(f"volume {volume.get('name')} has a type not allowed: {other}")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"unsafe sysctl {sysctl.get('name')}")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("windowsOptions.hostProcess is set")
    out.extend(_selinux_violations("pod", psc))
    pod_apparmor = (psc.get("appArmorProfile") or {}).get("type")
    if pod_apparmor is not None and pod_apparmor not in APPARMOR_OK:
        out.append(f"pod appArmorProfile {pod_apparmor}")
    for key, value in pod.annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            out.append(f"AppArmor annotation {key}={value}")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser is 0")
    pod_nonroot = psc.get("runAsNonRoot")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_OK:
        out.append(f"pod seccompProfile {pod_seccomp}")

    containers = _containers(spec)
    if not containers:
        out.append("no containers")
    for where, container in containers:
        csc: Mapping[str, Any] = container.get("securityContext") or {}
        if csc.get("privileged"):
            out.append(f"{where}: privileged")
        if csc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{where}: allowPrivilegeEscalation is not false")
        caps = csc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{where}: capabilities do not drop ALL")
        added = [c for c in caps.get("add") or [] if c != "NET_BIND_SERVICE"]
        if added:
            out.append(f"{where}: capabilities add {added}")
        nonroot = csc.get("runAsNonRoot", pod_nonroot)
        if csc.get("runAsNonRoot") is False or nonroot is not True:
            out.append(f"{where}: runAsNonRoot is not true")
        if csc.get("runAsUser") == 0:
            out.append(f"{where}: runAsUser is 0")
        seccomp = (csc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in SECCOMP_OK:
            out.append(f"{where}: seccompProfile is {seccomp} (RuntimeDefault or Localhost)")
        apparmor = (csc.get("appArmorProfile") or {}).get("type")
        if apparmor is not None and apparmor not in APPARMOR_OK:
            out.append(f"{where}: appArmorProfile {apparmor}")
        out.extend(_selinux_violations(where, csc))
        if csc.get("procMount", "Default") != "Default":
            out.append(f"{where}: procMount {csc.get('procMount')}")
        if (csc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{where}: windowsOptions.hostProcess is set")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{where}: hostPort {port['hostPort']}")
        # Ours, beyond the standard.
        if csc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{where}: readOnlyRootFilesystem is not true")
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        account = service_accounts.get(spec.get("serviceAccountName") or "default")
        automount = True if account is None else account.get("automountServiceAccountToken")
    if automount is not False:
        out.append("the service-account token is mounted (automountServiceAccountToken)")
    return out


def _selinux_violations(where: str, context: Mapping[str, Any]) -> list[str]:
    selinux = context.get("seLinuxOptions") or {}
    out: list[str] = []
    if selinux.get("type") not in (None, "", *SELINUX_TYPES):
        out.append(f"{where}: seLinuxOptions.type {selinux.get('type')}")
    for key in ("user", "role"):
        if selinux.get(key):
            out.append(f"{where}: seLinuxOptions.{key} is set")
    return out


# --- K2: NetworkPolicy reachability -----------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Something traffic can go to or come from: a pod (by its name label) or an address.
    `namespace` None means an address outside the cluster (only ipBlock peers match it)."""

    name: str
    namespace: str | None
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    ip: str = ""
    # (port name, number, protocol) the endpoint listens on; empty: anything (a probe).
    ports: tuple[tuple[str, int, str], ...] = ()
    in_release: bool = False


Edge = tuple[str, str, int, str]  # (from, to, port, protocol)


def release_endpoints(objects: Sequence[Manifest], namespace: str) -> list[Endpoint]:
    """One endpoint per workload pod template of the release, named by its name label."""
    endpoints: dict[str, Endpoint] = {}
    for index, pod in enumerate(pod_templates(objects)):
        name = pod.labels.get(NAME_LABEL) or pod.owner
        ports = tuple(
            (str(p.get("name") or ""), int(p["containerPort"]), str(p.get("protocol") or "TCP"))
            for _, c in _containers(pod.spec)
            for p in c.get("ports") or []
        )
        ip = str(ipaddress.ip_address("10.244.0.10") + index)
        endpoints[name] = Endpoint(name, namespace, dict(pod.labels), ip, ports, True)
    return list(endpoints.values())


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector against labels; an empty selector matches everything."""
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass
class Network:
    """The NetworkPolicies of a namespace and the endpoints to reason about."""

    policies: Sequence[Manifest]
    endpoints: Sequence[Endpoint]
    namespace: str
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def _ns_labels(self, namespace: str) -> Mapping[str, str]:
        return {
            "kubernetes.io/metadata.name": namespace,
            **self.namespace_labels.get(namespace, {}),
        }

    def _policy_ns(self, policy: Manifest) -> str:
        return str(policy["metadata"].get("namespace") or self.namespace)

    def selecting(self, endpoint: Endpoint, direction: str) -> list[Manifest]:
        """The policies that select the endpoint's pods for Ingress or Egress."""
        out = []
        for policy in self.policies:
            spec = policy.get("spec") or {}
            types = spec.get("policyTypes") or (
                ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]
            )
            if direction not in types or endpoint.namespace != self._policy_ns(policy):
                continue
            if selector_matches(spec.get("podSelector") or {}, endpoint.labels):
                out.append(policy)
        return out

    def _peer_matches(self, peer: Mapping[str, Any], policy_ns: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            address = ipaddress.ip_address(other.ip) if other.ip else None
            if address is None or address not in ipaddress.ip_network(block["cidr"]):
                return False
            return not any(address in ipaddress.ip_network(e) for e in block.get("except") or [])
        if other.namespace is None:
            return False
        if "namespaceSelector" in peer:
            if not selector_matches(peer["namespaceSelector"], self._ns_labels(other.namespace)):
                return False
        elif other.namespace != policy_ns:
            return False
        return selector_matches(peer.get("podSelector"), other.labels)

    @staticmethod
    def _port_matches(rule_ports: Any, target: Endpoint, port: int, protocol: str) -> bool:
        if not rule_ports:
            return True
        for rule in rule_ports:
            if (rule.get("protocol") or "TCP") != protocol:
                continue
            wanted = rule.get("port")
            if wanted is None:
                return True
            if isinstance(wanted, str) and not wanted.isdigit():
                # A named port is the target pod's container port of that name.
                if any(n == wanted and p == port and pr == protocol for n, p, pr in target.ports):
                    return True
                continue
            low = int(wanted)
            if low <= port <= int(rule.get("endPort") or low):
                return True
        return False

    def allows(self, source: Endpoint, target: Endpoint, port: int, protocol: str) -> bool:
        """Whether a connection source -> target:port/protocol gets through both ends."""
        return self._side_allows(source, target, target, "Egress", port, protocol) and (
            self._side_allows(target, source, target, "Ingress", port, protocol)
        )

    def _side_allows(
        self,
        endpoint: Endpoint,
        other: Endpoint,
        target: Endpoint,
        direction: str,
        port: int,
        protocol: str,
    ) -> bool:
        if endpoint.namespace is None:
            return True  # outside the cluster: not ours to restrict
        policies = self.selecting(endpoint, direction)
        if not policies:
            return True  # a pod no policy selects is open in that direction
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        for policy in policies:
            for rule in (policy.get("spec") or {}).get(key) or []:
                peers = rule.get(peers_key)
                if peers and not any(
                    self._peer_matches(p, self._policy_ns(policy), other) for p in peers
                ):
                    continue
                if self._port_matches(rule.get("ports"), target, port, protocol):
                    return True
        return False

    def candidate_ports(self) -> set[tuple[int, str]]:
        """Every port worth trying: what any endpoint listens on, what any rule names, and a few
        common ones (so a rule open to all ports shows up)."""
        found = {(p, pr) for e in self.endpoints for _, p, pr in e.ports}
        for policy in self.policies:
            spec = policy.get("spec") or {}
            for rule in (spec.get("ingress") or []) + (spec.get("egress") or []):
                for port in rule.get("ports") or []:
                    value = port.get("port")
                    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
                        found.add((int(value), port.get("protocol") or "TCP"))
        for common in (22, 53, 80, 443, 8000):
            found.update({(common, "TCP"), (common, "UDP")})
        return found

    def edges(self) -> set[Edge]:
        """Every allowed (from, to, port, protocol) with at least one end in the release."""
        ports = sorted(self.candidate_ports())
        out: set[Edge] = set()
        for source in self.endpoints:
            for target in self.endpoints:
                if not (source.in_release or target.in_release):
                    continue
                # Every candidate port, not only the ones the target listens on: a rule that
                # opens more than it should shows up as an extra edge.
                for port, protocol in ports:
                    if self.allows(source, target, port, protocol):
                        out.add((source.name, target.name, port, protocol))
        return out


def default_deny_problems(
    policies: Sequence[Manifest], endpoints: Sequence[Endpoint], name: str, namespace: str
) -> list[str]:
    """The release-wide default-deny policy: present, denying both directions (no rules), and
    selecting every pod of the release."""
    found = [p for p in policies if p["metadata"]["name"] == name]
    if not found:
        return [f"no NetworkPolicy {name}"]
    spec = found[0].get("spec") or {}
    out = []
    if sorted(spec.get("policyTypes") or []) != ["Egress", "Ingress"]:
        out.append(f"{name}: policyTypes {spec.get('policyTypes')} (both Ingress and Egress)")
    if spec.get("ingress") or spec.get("egress"):
        out.append(f"{name}: has allow rules; a default deny must have none")
    net = Network([found[0]], endpoints, namespace)
    for endpoint in endpoints:
        if endpoint.in_release and not net.selecting(endpoint, "Ingress"):
            out.append(f"{name} does not select the pods of {endpoint.name}")
    return out


def compare_edges(allowed: set[Edge], declared: set[Edge]) -> tuple[list[Edge], list[Edge]]:
    """(extra, missing): allowed but not declared, declared but not allowed."""
    return sorted(allowed - declared), sorted(declared - allowed)


# --- K4: resources, autoscaling, disruption budgets, probes -----------------------------------


def resource_problems(objects: Sequence[Manifest]) -> list[str]:
    """Every container (init containers too) without a cpu and memory request and limit."""
    out = []
    for pod in pod_templates(objects):
        for where, container in _containers(pod.spec):
            if where.startswith("ephemeralContainers"):
                continue
            resources = container.get("resources") or {}
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if not (resources.get(section) or {}).get(resource):
                        out.append(f"{pod.owner} {where}: no {resource} in {section}")
    return out


def scaling_problems(
    objects: Sequence[Manifest],
    services: Iterable[str],
    probes: Mapping[str, str] | None = None,
) -> list[str]:
    """For each service (by name label): a Deployment, an autoscaling/v2 HPA targeting it with
    a CPU metric and a scaleDown behaviour, a PDB selecting its pods, and in its containers a
    livenessProbe on /livez and a readinessProbe on /readyz (httpGet)."""
    probes = probes or {"livenessProbe": "/livez", "readinessProbe": "/readyz"}
    deployments = {
        (d["spec"]["template"]["metadata"].get("labels") or {}).get(NAME_LABEL): d
        for d in objects
        if d["kind"] == "Deployment"
    }
    hpas = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    out: list[str] = []
    for service in services:
        deployment = deployments.get(service)
        if deployment is None:
            out.append(f"{service}: no Deployment")
            continue
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
        targeting = [
            h
            for h in hpas
            if (h["spec"].get("scaleTargetRef") or {}).get("kind") == "Deployment"
            and h["spec"]["scaleTargetRef"].get("name") == name
        ]
        if not targeting:
            out.append(f"{service}: no HorizontalPodAutoscaler targets Deployment/{name}")
        for hpa in targeting:
            if hpa["apiVersion"] != "autoscaling/v2":
                out.append(f"{ident(hpa)}: apiVersion {hpa['apiVersion']}, not autoscaling/v2")
            metrics = hpa["spec"].get("metrics") or []
            if not any(
                m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"
                for m in metrics
            ):
                out.append(f"{ident(hpa)}: no CPU metric")
            if not (hpa["spec"].get("behavior") or {}).get("scaleDown"):
                out.append(f"{ident(hpa)}: no scaleDown behaviour")
        if not any(
            (p["spec"].get("selector") is not None)
            and selector_matches(p["spec"]["selector"], labels)
            for p in pdbs
        ):
            out.append(f"{service}: no PodDisruptionBudget selects its pods")
        for container in deployment["spec"]["template"]["spec"].get("containers") or []:
            for probe, path in probes.items():
                got = ((container.get(probe) or {}).get("httpGet") or {}).get("path")
                if got != path:
                    out.append(f"{service} container {container.get('name')}: {probe} on {got}")
    return out


# --- P7: footprint ------------------------------------------------------------------------------

_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
}


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity as a number (cpu in cores, memory in bytes)."""
    text = str(value).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            return Decimal(text[: -len(suffix)]) * _SUFFIXES[suffix]
    return Decimal(text)


def pod_requests(spec: Mapping[str, Any]) -> dict[str, Decimal]:
    """A pod's effective requests: its containers (and sidecar init containers) summed, or the
    largest init container if that is more (init containers run one at a time)."""
    result: dict[str, Decimal] = {}
    for resource in ("cpu", "memory"):

        def request(c: Mapping[str, Any], r: str = resource) -> Decimal:
            value = ((c.get("resources") or {}).get("requests") or {}).get(r)
            return quantity(value) if value is not None else Decimal(0)

        sidecars = Decimal(0)
        init_peak = Decimal(0)
        for init in spec.get("initContainers") or []:
            if init.get("restartPolicy") == "Always":
                sidecars += request(init)
            else:
                init_peak = max(init_peak, sidecars + request(init))
        running = sum((request(c) for c in spec.get("containers") or []), Decimal(0))
        result[resource] = max(running + sidecars, init_peak)
    return result


@dataclass
class Footprint:
    cpu: Decimal = Decimal(0)
    memory: Decimal = Decimal(0)
    # (workload, replicas, cpu per pod, memory per pod)
    counted: list[tuple[str, int, Decimal, Decimal]] = field(default_factory=list)
    hooks: list[tuple[str, Decimal, Decimal]] = field(default_factory=list)
    uncounted: list[str] = field(default_factory=list)


def footprint(objects: Sequence[Manifest]) -> Footprint:
    """Requests of the platform at rest: Deployments at their HPA's minReplicas (their replicas
    without one), StatefulSets at their replicas. Hook Jobs run only during install and upgrade:
    listed apart, not counted. Anything else that makes pods is listed as uncounted."""
    min_replicas = {
        h["spec"]["scaleTargetRef"]["name"]: int(h["spec"].get("minReplicas") or 1)
        for h in objects
        if h["kind"] == "HorizontalPodAutoscaler"
        and h["spec"].get("scaleTargetRef", {}).get("kind") == "Deployment"
    }
    result = Footprint()
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        spec = obj.get("spec") or {}
        if kind in ("Deployment", "StatefulSet"):
            replicas = spec.get("replicas", 1)
            if kind == "Deployment" and name in min_replicas:
                replicas = min_replicas[name]
            per_pod = pod_requests(spec["template"]["spec"])
            result.counted.append((ident(obj), int(replicas), per_pod["cpu"], per_pod["memory"]))
            result.cpu += per_pod["cpu"] * replicas
            result.memory += per_pod["memory"] * replicas
        elif kind == "Job" and is_hook(obj):
            per_pod = pod_requests(spec["template"]["spec"])
            result.hooks.append((ident(obj), per_pod["cpu"], per_pod["memory"]))
        elif kind in ("DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"):
            result.uncounted.append(ident(obj))
    return result


def footprint_problems(used: Footprint, cpu_limit: Decimal, memory_limit: Decimal) -> list[str]:
    out = []
    if used.cpu > cpu_limit:
        out.append(f"cpu requests {used.cpu} > {cpu_limit}")
    if used.memory > memory_limit:
        out.append(f"memory requests {used.memory / 2**30:.3f} GiB > {memory_limit / 2**30} GiB")
    out.extend(f"{u}: makes pods but is not counted" for u in used.uncounted)
    return out


# --- checksum annotations -------------------------------------------------------------------------


def template_annotations(objects: Sequence[Manifest], key: str) -> dict[str, str]:
    """name label -> the pod template annotation `key`, for every Deployment."""
    return {
        pod.labels.get(NAME_LABEL, pod.owner): pod.annotations.get(key, "")
        for pod in pod_templates(objects)
        if pod.kind == "Deployment"
    }


def changed(before: Mapping[str, str], after: Mapping[str, str]) -> set[str]:
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
