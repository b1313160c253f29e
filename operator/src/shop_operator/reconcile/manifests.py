"""Manifests and replica math: the canary Deployment built from the stable one and a spec."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from shop_operator.reconcile.spec import RolloutSpec, SpecError

API_VERSION = "rollouts.sweetslice.dev/v1alpha1"
KIND = "ServiceRollout"
ROLE_LABEL = "rollouts.sweetslice.dev/role"
ROLLOUT_LABEL = "rollouts.sweetslice.dev/rollout"
CANARY_SUFFIX = "-canary"

# Deployment spec fields a canary takes over from the stable Deployment as they are.
_COPIED_SPEC_FIELDS = ("minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit")


def canary_name(deployment: str) -> str:
    return f"{deployment}{CANARY_SUFFIX}"


def stable_replicas(stable: Mapping[str, Any]) -> int:
    """What the stable Deployment runs: status.replicas, else spec.replicas, else 1."""
    status_replicas = (stable.get("status") or {}).get("replicas")
    if status_replicas is not None:
        return int(status_replicas)
    spec_replicas = (stable.get("spec") or {}).get("replicas")
    return 1 if spec_replicas is None else int(spec_replicas)


def canary_replicas(stable: int, weight: int) -> int:
    """Canary replicas so that canary / (canary + stable) is about weight percent.

    Never fewer than one: a canary with no pods could never be analysed. Rounds half up, so
    the answer does not depend on Python's banker's rounding.
    """
    if not 0 < weight < 100:
        raise ValueError(f"weight must be between 1 and 99, got {weight}")
    exact = stable * weight / (100 - weight)
    return max(1, int(exact + 0.5))


def _container_index(containers: list[dict[str, Any]], spec: RolloutSpec) -> int:
    if not containers:
        raise SpecError("the Deployment has no containers")
    if spec.container is None:
        return 0
    for i, c in enumerate(containers):
        if c.get("name") == spec.container:
            return i
    raise SpecError(f"container {spec.container!r} not found in Deployment {spec.deployment!r}")


def new_version_containers(
    containers: list[dict[str, Any]], spec: RolloutSpec
) -> list[dict[str, Any]]:
    """A copy of the pod's containers with the chosen one on the new image and env.

    An env entry named in the spec replaces the existing entry of that name whole (a `valueFrom`
    there does not survive next to the new `value`); other entries keep their order.
    """
    out = copy.deepcopy(containers)
    target = out[_container_index(out, spec)]
    target["image"] = spec.image
    if spec.env:
        env = list(target.get("env") or [])
        for var in spec.env:
            entry = {"name": var.name, "value": var.value}
            for i, existing in enumerate(env):
                if existing.get("name") == var.name:
                    env[i] = entry
                    break
            else:
                env.append(entry)
        target["env"] = env
    return out


def has_new_version(deployment: Mapping[str, Any], spec: RolloutSpec) -> bool:
    """Whether the Deployment's pod template already runs the spec's image and env."""
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    try:
        target = containers[_container_index(containers, spec)]
    except SpecError:
        return False
    if target.get("image") != spec.image:
        return False
    env = {e.get("name"): e for e in target.get("env") or []}
    return all(
        var.name in env
        and env[var.name].get("value", "") == var.value
        and "valueFrom" not in env[var.name]
        for var in spec.env
    )


def owner_reference(rollout_name: str, rollout_uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": rollout_name,
        "uid": rollout_uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def canary_manifest(
    stable: Mapping[str, Any],
    spec: RolloutSpec,
    *,
    rollout_name: str,
    rollout_uid: str,
    replicas: int,
) -> dict[str, Any]:
    """The canary Deployment: the stable pod template on the new version, labelled as canary.

    Its selector is the stable selector plus the role label, so it never adopts stable pods,
    while the Service (name + instance) selects both and splits traffic by replica count.
    """
    meta = stable.get("metadata") or {}
    stable_spec = stable.get("spec") or {}
    namespace = meta.get("namespace")
    template = copy.deepcopy(stable_spec.get("template") or {})
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), ROLE_LABEL: "canary"}
    pod_spec = template.setdefault("spec", {})
    pod_spec["containers"] = new_version_containers(pod_spec.get("containers") or [], spec)

    selector = copy.deepcopy(stable_spec.get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), ROLE_LABEL: "canary"}

    labels = {
        **(meta.get("labels") or {}),
        ROLE_LABEL: "canary",
        ROLLOUT_LABEL: rollout_name,
    }
    body_spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": selector,
        "template": template,
    }
    for key in _COPIED_SPEC_FIELDS:
        if key in stable_spec:
            body_spec[key] = stable_spec[key]
    metadata: dict[str, Any] = {
        "name": canary_name(spec.deployment),
        "labels": labels,
        "ownerReferences": [owner_reference(rollout_name, rollout_uid)],
    }
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": body_spec}


def promotion_patch(stable: Mapping[str, Any], spec: RolloutSpec) -> dict[str, Any]:
    """A merge patch giving the stable Deployment the new image and env (nothing else).

    The whole container list is sent because a merge patch replaces lists; replicas are left
    out on purpose, they belong to the HPA.
    """
    containers = (((stable.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    return {
        "spec": {"template": {"spec": {"containers": new_version_containers(containers, spec)}}}
    }


def rollout_complete(deployment: Mapping[str, Any]) -> bool:
    """Whether a Deployment has finished rolling out its current template (as kubectl sees it)."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    wanted = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    replicas = int(status.get("replicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    return (
        observed >= generation
        and updated >= wanted
        and updated == replicas
        and available == replicas
    )
