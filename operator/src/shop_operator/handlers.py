"""Thin kopf handlers: read, decide (pure), apply, record.

Every ServiceRollout gets a timer that re-evaluates it every tick; creation, resumption after an
operator restart and spec changes evaluate it at once. All of them run the same `reconcile`,
serialised per object, and all state goes to the resource's status through kopf's patch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from shop_operator.k8s import ApiError, Kube
from shop_operator.metrics import OperatorMetrics
from shop_operator.prometheus import Prometheus
from shop_operator.reconcile.analysis import queries_for
from shop_operator.reconcile.machine import (
    Action,
    ApplyCanary,
    DeleteCanary,
    Observed,
    PatchStable,
    ScaleCanary,
    analysis_due,
    decide,
)
from shop_operator.reconcile.manifests import canary_name
from shop_operator.reconcile.spec import RolloutSpec, SpecError, parse_spec
from shop_operator.reconcile.status import TERMINAL, Status, merge_patch

GROUP = "rollouts.sweetslice.dev"
VERSION = "v1alpha1"
PLURAL = "servicerollouts"
FINALIZER = f"{GROUP}/canary-cleanup"

# The status keys this operator owns; anything else there (kopf's own) is left alone.
STATUS_KEYS = frozenset(Status().to_dict()) | {
    "stableReplicas",
    "stepStartedAt",
    "analysis",
    "observedGeneration",
}


@dataclass
class Runtime:
    """What the handlers share: the API and Prometheus clients, metrics, settings."""

    kube: Kube
    prometheus: Prometheus
    metrics: OperatorMetrics
    prometheus_url: str


def runtime(memo: Mapping[str, Any]) -> Runtime:
    return cast(Runtime, memo["runtime"])


def own_status(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (raw or {}).items() if k in STATUS_KEYS}


async def _apply(kube: Kube, namespace: str, spec: RolloutSpec, action: Action) -> None:
    canary = canary_name(spec.deployment)
    if isinstance(action, ApplyCanary):
        await kube.apply_canary(namespace, action.manifest)
    elif isinstance(action, ScaleCanary):
        await kube.scale_deployment(namespace, canary, action.replicas)
    elif isinstance(action, DeleteCanary):
        await kube.delete_deployment(namespace, canary)
    elif isinstance(action, PatchStable):
        await kube.patch_deployment(namespace, spec.deployment, action.patch)


async def _post(
    kube: Kube, body: Mapping[str, Any], type_: str, reason: str, *, message: str, logger: Any
) -> None:
    try:
        await kube.post_event(body, type_=type_, reason=reason, message=message)
    except ApiError as exc:
        logger.warning("could not post event %s: %s", reason, exc)


async def reconcile(
    body: Mapping[str, Any], patch: kopf.Patch, memo: kopf.Memo, logger: logging.Logger | Any
) -> None:
    """One tick for one ServiceRollout. API errors are logged; the next tick tries again."""
    lock = memo.setdefault("lock", asyncio.Lock())
    async with lock:
        await _reconcile(body, patch, memo, logger)


async def _reconcile(
    body: Mapping[str, Any], patch: kopf.Patch, memo: kopf.Memo, logger: logging.Logger | Any
) -> None:
    rt = runtime(memo)
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    stored = own_status(body.get("status"))
    # kopf applies our status patch after the handler returns and the watch brings it back a
    # little later; until the object's resourceVersion moves, trust what was written last.
    written = memo.get("written")
    current = stored
    if written is not None and written[0] == meta.get("resourceVersion"):
        current = written[1]
    status = Status.from_dict(current)

    try:
        spec = parse_spec(body.get("spec") or {})
    except (SpecError, KeyError, TypeError, ValueError) as exc:
        message = f"invalid spec: {exc}"
        if status.message != message:
            await _post(rt.kube, body, "Warning", "InvalidSpec", message=message, logger=logger)
            patch["status"] = {"message": message}
        return

    now = datetime.now(UTC)
    try:
        stable = await rt.kube.get_deployment(namespace, spec.deployment)
        canary = await rt.kube.get_deployment(namespace, canary_name(spec.deployment))
    except ApiError as exc:
        logger.warning("reading the Deployments failed: %s", exc)
        return
    measurement = None
    if analysis_due(now, spec, status):
        url = spec.analysis.prometheus_url or rt.prometheus_url
        measurement = await rt.prometheus.measure(url, queries_for(spec, namespace))

    decision = decide(
        now,
        spec,
        status,
        Observed(
            rollout_name=name,
            rollout_uid=meta["uid"],
            generation=int(meta.get("generation") or 0),
            stable=stable,
            canary=canary,
            measurement=measurement,
        ),
    )
    try:
        for action in decision.actions:
            await _apply(rt.kube, namespace, spec, action)
    except ApiError as exc:
        # Nothing is recorded: the status still describes the cluster before this tick, and
        # the next tick decides the same again.
        logger.warning("applying %s failed: %s", type(action).__name__, exc)
        return

    new = decision.status.to_dict()
    status_patch = merge_patch(stored, new)
    if status_patch:
        patch["status"] = status_patch
    memo["written"] = (meta.get("resourceVersion"), new)

    for event in decision.events:
        logger.info("%s: %s", event.reason, event.message)
        await _post(rt.kube, body, event.type, event.reason, message=event.message, logger=logger)
    new_phase = decision.status.phase
    if decision.analysed and decision.status.analysis is not None:
        rt.metrics.analyses.labels(decision.status.analysis.verdict).inc()
    if new_phase in TERMINAL and status.phase not in TERMINAL:
        rt.metrics.rollouts.labels(new_phase).inc()
    rt.metrics.weight.labels(namespace, name).set(decision.status.weight)


def register(registry: kopf.OperatorRegistry, *, tick_seconds: float) -> None:
    """Register the operator's handlers; the tick comes from the settings, hence not at import."""

    @kopf.on.login(registry=registry)
    async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is not None:
            await runtime(memo).kube.connect(info)
        return info

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)
    async def kick_off(
        *, body: kopf.Body, patch: kopf.Patch, memo: Any, logger: kopf.Logger, **_: Any
    ) -> None:
        # Acting at once on a change (abort, pause, promote) rather than at the next tick.
        await reconcile(body, patch, memo, logger)

    # Finished rollouts (Succeeded, RolledBack, Aborted) have nothing left to do: no timer.
    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        interval=tick_seconds,
        registry=registry,
        when=lambda status, **_: status.get("phase") not in TERMINAL,
    )
    async def tick(
        *, body: kopf.Body, patch: kopf.Patch, memo: Any, logger: kopf.Logger, **_: Any
    ) -> None:
        await reconcile(body, patch, memo, logger)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    async def remove_canary(
        *,
        spec: kopf.Spec,
        namespace: str | None,
        name: str,
        memo: Any,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        rt = runtime(memo)
        deployment = spec.get("deployment")
        if namespace is None:  # the CRD is namespaced; kopf types it for cluster objects too
            return
        if deployment:
            try:
                removed = await rt.kube.delete_deployment(namespace, canary_name(str(deployment)))
            except ApiError as exc:
                raise kopf.TemporaryError(
                    f"deleting the canary failed: {exc}", delay=tick_seconds
                ) from exc
            if removed:
                logger.info(
                    "canary %s deleted with its ServiceRollout", canary_name(str(deployment))
                )
        rt.metrics.forget(namespace, name)
