"""Builders shared by the operator's unit tests: a stable Deployment and rollout specs.

They are handed out as fixtures (callables), since the tests directory is not a package.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from shop_operator.reconcile.spec import RolloutSpec, parse_spec

NAMESPACE = "shop"
ROLLOUT = "order-canary-rollout"
UID = "0d9e1b4e-5d2c-4c4f-9b8e-1f2a3b4c5d6e"


def stable_deployment(
    *,
    replicas: int = 4,
    image: str = "sweetslice-order:1.0",
    generation: int = 3,
    complete: bool = True,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": generation if complete else generation - 1,
        "replicas": replicas,
        "updatedReplicas": replicas if complete else replicas - 1,
        "availableReplicas": replicas,
        "readyReplicas": replicas,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "order",
            "namespace": NAMESPACE,
            "generation": generation,
            "resourceVersion": "1234",
            "uid": "stable-uid",
            "labels": {
                "app.kubernetes.io/name": "order",
                "app.kubernetes.io/instance": "shop",
                "app.kubernetes.io/managed-by": "Helm",
            },
            "annotations": {
                "deployment.kubernetes.io/revision": "3",
                "meta.helm.sh/release-name": "shop",
            },
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "order",
                    "app.kubernetes.io/instance": "shop",
                }
            },
            "strategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {
                    "labels": {
                        "app.kubernetes.io/name": "order",
                        "app.kubernetes.io/instance": "shop",
                    },
                    "annotations": {"checksum/config": "abc"},
                },
                "spec": {
                    "serviceAccountName": "order",
                    "containers": [
                        {
                            "name": "order",
                            "image": image,
                            "env": [
                                {"name": "ORDER_LOG_LEVEL", "value": "info"},
                                {"name": "ORDER_FEATURE", "value": "off"},
                                {
                                    "name": "ORDER_TOKEN",
                                    "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}},
                                },
                            ],
                        },
                        {"name": "sidecar", "image": "envoy:1.30"},
                    ],
                },
            },
        },
        "status": status,
    }


def with_image(deployment: dict[str, Any], image: str, **env: str) -> dict[str, Any]:
    """The Deployment after a promotion patch: the first container on `image` with `env` set."""
    out = copy.deepcopy(deployment)
    container = out["spec"]["template"]["spec"]["containers"][0]
    container["image"] = image
    for name, value in env.items():
        for entry in container["env"]:
            if entry["name"] == name:
                entry.clear()
                entry.update(name=name, value=value)
    return out


def make_spec(**overrides: Any) -> RolloutSpec:
    raw: dict[str, Any] = {
        "deployment": "order",
        "image": "sweetslice-order:2.0",
        "env": [{"name": "ORDER_FEATURE", "value": "on"}],
        "steps": [
            {"weight": 20, "pauseSeconds": 0},
            {"weight": 50, "pauseSeconds": 60},
            {"weight": 80, "pauseSeconds": 0},
        ],
        "analysis": {
            "intervalSeconds": 30,
            "failureLimit": 2,
            "minRequests": 20,
            "maxErrorRatio": 0.05,
            "maxP95Seconds": 0.5,
            "maxP99Seconds": 1.0,
        },
    }
    analysis = overrides.pop("analysis", None)
    if analysis:
        raw["analysis"] = {**raw["analysis"], **analysis}
    raw.update(overrides)
    return parse_spec(raw)


@pytest.fixture
def stable() -> Callable[..., dict[str, Any]]:
    return stable_deployment


@pytest.fixture
def rollout_spec() -> Callable[..., RolloutSpec]:
    return make_spec


@pytest.fixture
def promoted() -> Callable[..., dict[str, Any]]:
    return with_image
