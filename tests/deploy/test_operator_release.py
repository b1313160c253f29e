"""The operator's two charts on a real API server (the `cluster` fixture; kwok runs the pods).

What the static tests (test_operator_chart.py) cannot know, asked of the API server itself: the
CRD chart installs a CRD the server accepts and `helm upgrade` changes it; the operator chart
installs into a namespace that enforces the `restricted` Pod Security profile and its pod
starts; the operator's account may do exactly what the operator does (`kubectl auth can-i`);
the samples pass the CRD's validation, CEL rules included, and a bad one does not; and
uninstalling the CRD chart keeps the CRD. One story, in order: each step needs the last one's
release.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the lock

from tests.deploy.charts_support import Charts
from tests.deploy.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "rollouts-release"
CRD_NAME = "servicerollouts.rollouts.sweetslice.dev"
OPERATOR_RELEASE = "sweetslice-operator"
CRDS_RELEASE = "sweetslice-crds"
ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{OPERATOR_RELEASE}"
NAMESPACE_MANIFEST = f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
"""
ROLLOUTS = "servicerollouts.rollouts.sweetslice.dev"
# (verb, resource, subresource) the operator's account must be allowed in its namespace ...
ALLOWED = [
    *((v, ROLLOUTS, "") for v in ("get", "list", "watch", "patch")),
    *((v, ROLLOUTS, "status") for v in ("get", "list", "watch", "patch")),
    *((v, "deployments.apps", "") for v in ("get", "list", "watch", "create", "patch", "delete")),
    ("create", "events", ""),
    ("patch", "events", ""),
]
# ... and a few of the many things it must not do there.
DENIED = [
    ("create", ROLLOUTS, ""),
    ("delete", ROLLOUTS, ""),
    ("update", ROLLOUTS, "status"),
    ("update", "deployments.apps", ""),
    ("patch", "deployments.apps", "scale"),
    ("get", "secrets", ""),
    ("list", "pods", ""),
    ("create", "pods", ""),
    ("patch", "services", ""),
    ("list", "kopfpeerings.kopf.dev", ""),
    ("escalate", "roles.rbac.authorization.k8s.io", ""),
]


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> Iterator[str]:
    cluster.apply(NAMESPACE_MANIFEST)
    cluster.wait_service_account(NAMESPACE)
    try:
        yield NAMESPACE
    finally:
        cluster.helm("uninstall", OPERATOR_RELEASE, "-n", NAMESPACE, check=False)
        cluster.helm("uninstall", CRDS_RELEASE, "-n", NAMESPACE, check=False)
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _adopt_crd(cluster: Cluster) -> None:
    """A CRD applied by hand (the operator's own tests do) is handed to the release, the way
    helm adopts an object: its ownership label and annotations. Without them `helm install`
    refuses to take over an object it did not create."""
    if cluster.kubectl("get", "crd", CRD_NAME, check=False).returncode != 0:
        return
    cluster.kubectl("label", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm", "--overwrite")
    cluster.kubectl(
        "annotate",
        "crd",
        CRD_NAME,
        f"meta.helm.sh/release-name={CRDS_RELEASE}",
        f"meta.helm.sh/release-namespace={NAMESPACE}",
        "--overwrite",
    )


def _sample(path: Path, **spec_changes: object) -> str:
    """A sample moved into the test's namespace, with some of its spec changed."""
    resource = yaml.safe_load(path.read_text())
    resource["metadata"]["namespace"] = NAMESPACE
    resource["spec"].update(spec_changes)
    return str(yaml.safe_dump(resource))


def test_the_crd_and_operator_charts_on_a_real_api_server(
    cluster: Cluster, charts: Charts, namespace: str, tmp_path: Path
) -> None:
    # The CRD chart is changed below: a copy of its own, not the session's shared one.
    crds = tmp_path / "sweetslice-crds"
    shutil.copytree(charts.root / "sweetslice-crds", crds)
    # 1. The CRD chart: accepted, Established, kept-on-uninstall annotation in place.
    _adopt_crd(cluster)
    cluster.helm("install", CRDS_RELEASE, str(crds), "-n", namespace)
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    crd = cluster.get_json("crd", CRD_NAME)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    # 2. `helm upgrade` changes the CRD (it is in templates/, not crds/): a new printer column.
    template = crds / "templates" / "servicerollouts.yaml"
    original = template.read_text()
    changed = yaml.safe_load(original)
    changed["spec"]["versions"][0]["additionalPrinterColumns"].append(
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1}
    )
    template.write_text(yaml.safe_dump(changed))
    cluster.helm("upgrade", CRDS_RELEASE, str(crds), "-n", namespace)
    columns = cluster.get_json("crd", CRD_NAME)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert "Message" in [c["name"] for c in columns]
    template.write_text(original)
    cluster.helm("upgrade", CRDS_RELEASE, str(crds), "-n", namespace)
    columns = cluster.get_json("crd", CRD_NAME)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert "Message" not in [c["name"] for c in columns]

    # 3. The operator chart in a namespace enforcing `restricted`: admitted, and its pod runs.
    installed = cluster.helm(
        "install", OPERATOR_RELEASE, str(charts.root / "sweetslice-operator"), "-n", namespace,
        "--timeout", "3m",
    )  # fmt: skip
    assert "STATUS: deployed" in installed.stdout
    assert "would violate PodSecurity" not in installed.stderr, installed.stderr
    cluster.wait_deployments_available(namespace, names=(OPERATOR_RELEASE,), timeout=120)
    pods = cluster.get_json("pods", "-n", namespace)["items"]
    assert len(pods) == 1 and pods[0]["spec"]["serviceAccountName"] == OPERATOR_RELEASE

    # 4. RBAC, as the API server decides it for the operator's account.
    def can(verb: str, resource: str, subresource: str = "", where: str = namespace) -> bool:
        # --subresource, not resource/name: "servicerollouts/status" would be a rollout named
        # "status".
        answer = cluster.kubectl(
            "auth", "can-i", verb, resource, f"--subresource={subresource}", "-n", where,
            "--as", ACCOUNT, check=False,
        )  # fmt: skip
        return answer.stdout.strip() == "yes"

    assert [rule for rule in ALLOWED if not can(*rule)] == []
    assert [rule for rule in DENIED if can(*rule)] == []
    # Nothing outside the watched namespace, nothing cluster-wide.
    assert not can("list", "deployments.apps", where="default")
    assert not can("list", ROLLOUTS, where="default")
    assert not can("list", "namespaces")
    assert not can("list", "customresourcedefinitions.apiextensions.k8s.io")

    # 5. The samples pass the server's validation, CEL rules included; a bad one does not.
    for sample in sorted((ROOT / "k8s" / "samples").glob("*.yaml")):
        cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=_sample(sample))
    order = ROOT / "k8s" / "samples" / "order-rollout.yaml"
    refused = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-",
        input=_sample(order, steps=[{"weight": 50}, {"weight": 20}]),
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "strictly increasing" in refused.stderr, refused.stderr

    # 6. Uninstalling the CRD chart keeps the CRD (and with it every ServiceRollout).
    cluster.helm("uninstall", OPERATOR_RELEASE, "-n", namespace)
    uninstalled = cluster.helm("uninstall", CRDS_RELEASE, "-n", namespace)
    assert "kept due to the resource policy" in uninstalled.stdout + uninstalled.stderr
    assert cluster.kubectl("get", "crd", CRD_NAME, check=False).returncode == 0
