"""The canary Deployment built from the stable one, the promotion patch and replica math."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from shop_operator.reconcile.manifests import (
    ROLE_LABEL,
    canary_manifest,
    canary_name,
    canary_replicas,
    has_new_version,
    promotion_patch,
    rollout_complete,
    stable_replicas,
)
from shop_operator.reconcile.spec import RolloutSpec, SpecError

Stable = Callable[..., dict[str, Any]]
Spec = Callable[..., RolloutSpec]


def _canary(stable: dict[str, Any], spec: RolloutSpec, replicas: int = 1) -> dict[str, Any]:
    return canary_manifest(
        stable, spec, rollout_name="order-rollout", rollout_uid="uid-1", replicas=replicas
    )


def test_canary_is_a_copy_of_the_stable_template_on_the_new_version(
    stable: Stable, rollout_spec: Spec
) -> None:
    base = stable()
    manifest = _canary(base, rollout_spec(), replicas=2)

    assert manifest["metadata"]["name"] == "order-canary" == canary_name("order")
    assert manifest["metadata"]["namespace"] == "shop"
    assert manifest["spec"]["replicas"] == 2
    assert manifest["spec"]["revisionHistoryLimit"] == 5
    template = manifest["spec"]["template"]
    assert template["metadata"]["annotations"] == {"checksum/config": "abc"}
    assert template["spec"]["serviceAccountName"] == "order"
    order, sidecar = template["spec"]["containers"]
    assert order["image"] == "sweetslice-order:2.0"
    assert sidecar == {"name": "sidecar", "image": "envoy:1.30"}
    # The spec's variable replaces the old value; the others keep value and order.
    assert order["env"] == [
        {"name": "ORDER_LOG_LEVEL", "value": "info"},
        {"name": "ORDER_FEATURE", "value": "on"},
        {"name": "ORDER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}},
    ]
    # Helm's and the Deployment controller's annotations are not the canary's.
    assert "annotations" not in manifest["metadata"]


def test_canary_labels_and_selector_never_match_stable_pods(
    stable: Stable, rollout_spec: Spec
) -> None:
    base = stable()
    manifest = _canary(base, rollout_spec())
    selector = manifest["spec"]["selector"]["matchLabels"]
    pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
    stable_pod_labels = base["spec"]["template"]["metadata"]["labels"]

    assert pod_labels == {**stable_pod_labels, ROLE_LABEL: "canary"}
    assert selector == {**base["spec"]["selector"]["matchLabels"], ROLE_LABEL: "canary"}
    # The canary selector needs the role label, which stable pods lack ...
    assert not all(stable_pod_labels.get(k) == v for k, v in selector.items())
    # ... while the Service's selector (name + instance) still picks the canary's pods.
    service_selector = base["spec"]["selector"]["matchLabels"]
    assert all(pod_labels.get(k) == v for k, v in service_selector.items())
    assert manifest["metadata"]["labels"][ROLE_LABEL] == "canary"
    assert manifest["metadata"]["labels"]["rollouts.sweetslice.dev/rollout"] == "order-rollout"


def test_canary_is_owned_by_its_rollout(stable: Stable, rollout_spec: Spec) -> None:
    (owner,) = _canary(stable(), rollout_spec())["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "rollouts.sweetslice.dev/v1alpha1",
        "kind": "ServiceRollout",
        "name": "order-rollout",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_building_the_canary_leaves_the_stable_deployment_untouched(
    stable: Stable, rollout_spec: Spec
) -> None:
    base = stable()
    before = copy.deepcopy(base)
    _canary(base, rollout_spec(), replicas=7)
    promotion_patch(base, rollout_spec())
    assert base == before


def test_named_container_gets_the_image(stable: Stable, rollout_spec: Spec) -> None:
    spec = rollout_spec(container="sidecar", image="envoy:1.31", env=[])
    order, sidecar = _canary(stable(), spec)["spec"]["template"]["spec"]["containers"]
    assert sidecar["image"] == "envoy:1.31"
    assert order["image"] == "sweetslice-order:1.0"


def test_unknown_container_is_a_spec_error(stable: Stable, rollout_spec: Spec) -> None:
    with pytest.raises(SpecError, match="nope"):
        _canary(stable(), rollout_spec(container="nope"))


def test_new_env_variable_is_appended(stable: Stable, rollout_spec: Spec) -> None:
    spec = rollout_spec(
        env=[{"name": "ORDER_TOKEN", "value": "plain"}, {"name": "NEW", "value": "1"}]
    )
    order = _canary(stable(), spec)["spec"]["template"]["spec"]["containers"][0]
    assert order["env"][2] == {"name": "ORDER_TOKEN", "value": "plain"}
    assert order["env"][3] == {"name": "NEW", "value": "1"}


def test_promotion_patch_changes_only_the_template_containers(
    stable: Stable, rollout_spec: Spec
) -> None:
    patch = promotion_patch(stable(replicas=9), rollout_spec())
    assert set(patch) == {"spec"}
    assert set(patch["spec"]) == {"template"}, "replicas belong to the HPA"
    containers = patch["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "sweetslice-order:2.0"
    assert {"name": "ORDER_FEATURE", "value": "on"} in containers[0]["env"]
    assert containers[1] == {"name": "sidecar", "image": "envoy:1.30"}


def test_has_new_version(stable: Stable, rollout_spec: Spec, promoted: Stable) -> None:
    spec = rollout_spec()
    assert not has_new_version(stable(), spec)
    assert not has_new_version(promoted(stable(), "sweetslice-order:2.0"), spec), "env differs"
    assert has_new_version(promoted(stable(), "sweetslice-order:2.0", ORDER_FEATURE="on"), spec)
    assert has_new_version(_canary(stable(), spec), spec)


@pytest.mark.parametrize(
    ("stable_count", "weight", "expected"),
    [
        (4, 20, 1),  # 4 * 20 / 80 = 1
        (4, 50, 4),
        (4, 80, 16),
        (10, 10, 1),  # 1.11 rounds down
        (10, 25, 3),  # 3.33
        (3, 50, 3),
        (1, 10, 1),  # never fewer than one: 0.11
        (0, 50, 1),  # a stable scaled to zero still gets a canary to analyse
        (2, 60, 3),  # exactly 3.0
        (1, 60, 2),  # 1.5 rounds half up
        (9, 99, 891),
    ],
)
def test_canary_replicas(stable_count: int, weight: int, expected: int) -> None:
    assert canary_replicas(stable_count, weight) == expected


@pytest.mark.parametrize("weight", [0, 100, -5])
def test_canary_replicas_refuses_weights_outside_1_to_99(weight: int) -> None:
    with pytest.raises(ValueError, match="weight"):
        canary_replicas(4, weight)


def test_stable_replicas_prefers_status_then_spec_then_one(stable: Stable) -> None:
    base = stable(replicas=4)
    base["status"]["replicas"] = 6  # the HPA has scaled up; the spec lags behind
    assert stable_replicas(base) == 6
    del base["status"]["replicas"]
    assert stable_replicas(base) == 4
    del base["spec"]["replicas"]
    assert stable_replicas(base) == 1


def test_rollout_complete(stable: Stable) -> None:
    assert rollout_complete(stable(complete=True))
    assert not rollout_complete(stable(complete=False))
    old_pods_left = stable()
    old_pods_left["status"]["replicas"] = 5  # one old pod still terminating
    assert not rollout_complete(old_pods_left)
    unavailable = stable()
    unavailable["status"]["availableReplicas"] = 3
    assert not rollout_complete(unavailable)
    not_observed = stable()
    not_observed["metadata"]["generation"] = 4
    assert not rollout_complete(not_observed)
