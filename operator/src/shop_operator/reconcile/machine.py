"""The step machine: one decision per tick from the spec, the status and what was observed.

`decide` is pure and deterministic. All state lives in the status it returns, so the operator
can stop anywhere and resume from the status it reads back; deciding the same tick twice gives
the same result, and the actions it asks for are idempotent (create-or-update, scale, delete).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from shop_operator.reconcile.analysis import Measurement, evaluate
from shop_operator.reconcile.manifests import (
    canary_manifest,
    canary_replicas,
    has_new_version,
    promotion_patch,
    rollout_complete,
    stable_replicas,
)
from shop_operator.reconcile.spec import RolloutSpec, SpecError
from shop_operator.reconcile.status import (
    TERMINAL,
    AnalysisStatus,
    ConditionStatus,
    Phase,
    Status,
)


@dataclass(frozen=True)
class ApplyCanary:
    """Create the canary Deployment, or bring an existing one to this manifest."""

    manifest: dict[str, Any]


@dataclass(frozen=True)
class ScaleCanary:
    replicas: int


@dataclass(frozen=True)
class DeleteCanary:
    pass


@dataclass(frozen=True)
class PatchStable:
    """Merge patch of the stable Deployment's pod template (image and env only)."""

    patch: dict[str, Any]


Action = ApplyCanary | ScaleCanary | DeleteCanary | PatchStable


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """What the handler read this tick. `measurement` is set only when an analysis was due."""

    rollout_name: str
    rollout_uid: str
    generation: int
    stable: Mapping[str, Any] | None
    canary: Mapping[str, Any] | None
    measurement: Measurement | None = None


@dataclass(frozen=True)
class Decision:
    status: Status
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    analysed: bool = field(default=False)


def _truncate(now: datetime) -> datetime:
    # Status times have second precision; deciding in the same unit keeps a decision made from a
    # status read back (after a restart) identical to one made from the status in memory.
    return now.replace(microsecond=0)


def analysis_due(now: datetime, spec: RolloutSpec, status: Status) -> bool:
    """Whether this tick should query Prometheus.

    Only while progressing with no manual control set; the first analysis of a step comes one
    interval after the step starts (so the window holds canary traffic), later ones one
    interval after the previous analysis.
    """
    if status.phase != "Progressing" or spec.abort or spec.promote or spec.paused:
        return False
    last = status.step_started_at
    if status.analysis is not None and (last is None or status.analysis.at > last):
        last = status.analysis.at
    if last is None:
        return True
    return _truncate(now) - last >= timedelta(seconds=spec.analysis.interval_seconds)


def _with_phase_conditions(status: Status, now: datetime) -> Status:
    phase = status.phase
    message = status.message
    if phase in ("Pending", "Progressing", "Promoting"):
        status = status.with_condition("Progressing", "True", phase, message, now)
    else:
        status = status.with_condition("Progressing", "False", phase, message, now)
    if phase == "Succeeded":
        status = status.with_condition("Completed", "True", phase, message, now)
    elif phase in ("RolledBack", "Aborted"):
        status = status.with_condition("Completed", "False", phase, message, now)
    else:
        status = status.with_condition(
            "Completed", "False", "InProgress", "rollout in progress", now
        )
    analysis = status.analysis
    if analysis is None:
        status = status.with_condition(
            "AnalysisHealthy", "Unknown", "NotAnalysed", "no analysis yet", now
        )
    else:
        healthy: dict[str, ConditionStatus] = {
            "Pass": "True",
            "Fail": "False",
            "Inconclusive": "Unknown",
        }
        status = status.with_condition(
            "AnalysisHealthy", healthy[analysis.verdict], analysis.verdict, analysis.reason, now
        )
    return status


class _Builder:
    """Collects one tick's actions and events while the status evolves."""

    def __init__(self, now: datetime, spec: RolloutSpec, old: Status, observed: Observed) -> None:
        self.now = now
        self.spec = spec
        self.old = old
        self.observed = observed
        self.status = replace(old, observed_generation=observed.generation)
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.analysed = False

    def transition(self, phase: Phase, message: str, reason: str, warning: bool = False) -> None:
        self.status = replace(self.status, phase=phase, message=message)
        if phase != self.old.phase:
            self.events.append(Event("Warning" if warning else "Normal", reason, message))

    def note(self, message: str, reason: str, warning: bool = False) -> None:
        """A message without a phase change; an event only when the message is new."""
        if message != self.old.message:
            self.events.append(Event("Warning" if warning else "Normal", reason, message))
        self.status = replace(self.status, message=message)

    def delete_canary(self) -> None:
        if self.observed.canary is not None:
            self.actions.append(DeleteCanary())
        self.status = replace(self.status, canary_replicas=0, weight=0)

    def finish(self) -> Decision:
        status = _with_phase_conditions(self.status, self.now)
        return Decision(status, tuple(self.actions), tuple(self.events), self.analysed)


def decide(now: datetime, spec: RolloutSpec, status: Status, observed: Observed) -> Decision:
    """The next state of a rollout and what to do to the cluster to get there."""
    now = _truncate(now)
    b = _Builder(now, spec, status, observed)
    phase = status.phase

    if phase in TERMINAL:
        # Finished: only make sure no canary is left behind (a delete may have been lost).
        if observed.canary is not None:
            b.actions.append(DeleteCanary())
        return b.finish()

    if spec.abort and phase != "Promoting":
        b.delete_canary()
        b.transition(
            "Aborted",
            "aborted by spec.abort; canary removed, stable untouched",
            "Aborted",
            warning=True,
        )
        return b.finish()

    stable = observed.stable
    if stable is None:
        b.note(f"Deployment {spec.deployment!r} not found", "DeploymentMissing", warning=True)
        return b.finish()
    try:
        promotion = promotion_patch(stable, spec)
    except SpecError as exc:
        b.note(str(exc), "InvalidSpec", warning=True)
        return b.finish()

    stable_count = stable_replicas(stable)
    b.status = replace(b.status, stable_replicas=stable_count)

    if phase == "Promoting" or spec.promote:
        if phase != "Promoting":
            b.transition(
                "Promoting",
                "promoted by spec.promote; the stable Deployment takes the new version",
                "Promoting",
            )
        _promote(b, stable, promotion)
        return b.finish()

    if phase == "Pending":
        step = spec.steps[0]
        replicas = canary_replicas(stable_count, step.weight)
        b.actions.append(ApplyCanary(_manifest(stable, spec, observed, replicas)))
        b.status = replace(
            b.status,
            step=0,
            weight=step.weight,
            canary_replicas=replicas,
            step_started_at=now,
            failures=0,
            analysis=None,
        )
        b.transition(
            "Progressing",
            f"canary started at {step.weight}% (step 1 of {len(spec.steps)})",
            "Started",
        )
        return b.finish()

    # Progressing or Paused from here on.
    step_index = min(status.step, len(spec.steps) - 1)
    weight = spec.steps[step_index].weight
    _sync_canary(b, stable, weight)

    if spec.paused:
        b.transition("Paused", f"paused at step {step_index + 1} ({weight}%)", "Paused")
        return b.finish()
    if phase == "Paused":
        # Resuming: the step gets its full pause and a fresh analysis again.
        b.status = replace(b.status, step_started_at=now)
        b.transition("Progressing", f"resumed at step {step_index + 1} ({weight}%)", "Resumed")
        return b.finish()

    if observed.measurement is not None and analysis_due(now, spec, status):
        result = evaluate(spec.analysis, observed.measurement)
        b.analysed = True
        failures = b.status.failures + (1 if result.verdict == "Fail" else 0)
        b.status = replace(
            b.status,
            failures=failures,
            analysis=AnalysisStatus(at=now, **asdict(result)),
        )
        if result.verdict == "Fail":
            limit = spec.analysis.failure_limit
            if failures >= limit:
                b.delete_canary()
                b.transition(
                    "RolledBack",
                    f"rolled back after {failures} failed analyses (limit {limit}): "
                    f"{result.reason}",
                    "RolledBack",
                    warning=True,
                )
                return b.finish()
            b.events.append(
                Event(
                    "Warning",
                    "AnalysisFailed",
                    f"analysis {failures}/{limit} failed: {result.reason}",
                )
            )

    _maybe_advance(b, stable, step_index)
    return b.finish()


def _manifest(
    stable: Mapping[str, Any], spec: RolloutSpec, observed: Observed, replicas: int
) -> dict[str, Any]:
    return canary_manifest(
        stable,
        spec,
        rollout_name=observed.rollout_name,
        rollout_uid=observed.rollout_uid,
        replicas=replicas,
    )


def _sync_canary(b: _Builder, stable: Mapping[str, Any], weight: int) -> None:
    """Keep the canary on the new version and at the replica count of the current weight.

    The stable count follows the HPA, so the canary's count is recomputed every tick.
    """
    replicas = canary_replicas(stable_replicas(stable), weight)
    canary = b.observed.canary
    if canary is None or not has_new_version(canary, b.spec):
        b.actions.append(ApplyCanary(_manifest(stable, b.spec, b.observed, replicas)))
    elif (canary.get("spec") or {}).get("replicas") != replicas:
        b.actions.append(ScaleCanary(replicas))
    b.status = replace(b.status, weight=weight, canary_replicas=replicas)


def _maybe_advance(b: _Builder, stable: Mapping[str, Any], step_index: int) -> None:
    spec, status, now = b.spec, b.status, b.now
    step = spec.steps[step_index]
    started = status.step_started_at or now
    analysis = status.analysis
    if now - started < timedelta(seconds=step.pause_seconds):
        return
    # Only an analysis made after the step started (at this step's weight) may move it on.
    if analysis is None or analysis.verdict != "Pass" or analysis.at <= started:
        return
    if step_index + 1 < len(spec.steps):
        nxt = spec.steps[step_index + 1]
        # Drop what _sync_canary asked for at the old weight: the new weight supersedes it.
        b.actions = [a for a in b.actions if not isinstance(a, ScaleCanary)]
        replicas = canary_replicas(stable_replicas(stable), nxt.weight)
        if not any(isinstance(a, ApplyCanary) for a in b.actions):
            b.actions.append(ScaleCanary(replicas))
        else:
            b.actions = [
                ApplyCanary(_manifest(stable, spec, b.observed, replicas))
                if isinstance(a, ApplyCanary)
                else a
                for a in b.actions
            ]
        b.status = replace(
            status,
            step=step_index + 1,
            weight=nxt.weight,
            canary_replicas=replicas,
            step_started_at=now,
        )
        message = f"step {step_index + 2} of {len(spec.steps)}: canary at {nxt.weight}%"
        b.status = replace(b.status, message=message)
        b.events.append(Event("Normal", "StepAdvanced", message))
        return
    b.transition(
        "Promoting",
        f"all {len(spec.steps)} steps passed; the stable Deployment takes the new version",
        "Promoting",
    )
    _promote(b, stable, promotion_patch(stable, spec))


def _promote(b: _Builder, stable: Mapping[str, Any], promotion: dict[str, Any]) -> None:
    """Give the stable Deployment the new version, then drop the canary once it has rolled out."""
    if not has_new_version(stable, b.spec):
        b.actions.append(PatchStable(promotion))
        return
    if not rollout_complete(stable):
        return
    b.delete_canary()
    b.transition(
        "Succeeded",
        f"promoted: Deployment {b.spec.deployment!r} runs {b.spec.image}",
        "Succeeded",
    )
