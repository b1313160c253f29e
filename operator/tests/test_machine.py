"""The step machine, driven tick by tick against a simulated cluster.

`Sim` plays the handler: it stores the status as the API server would (a JSON round trip),
queries "Prometheus" only when an analysis is due, and applies the decided actions to its
Deployments, so the tests see what the operator would do to a cluster.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shop_operator.reconcile.analysis import Measurement
from shop_operator.reconcile.machine import (
    ApplyCanary,
    Decision,
    DeleteCanary,
    Observed,
    PatchStable,
    ScaleCanary,
    analysis_due,
    decide,
)
from shop_operator.reconcile.manifests import has_new_version
from shop_operator.reconcile.spec import RolloutSpec
from shop_operator.reconcile.status import Status, merge_patch

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
HEALTHY = Measurement(requests=200, error_ratio=0.01, p95=0.1, p99=0.2)
BROKEN = Measurement(requests=200, error_ratio=0.3, p95=0.1, p99=0.2)
QUIET = Measurement(requests=3, error_ratio=0.0)
DOWN = Measurement(error="http://prometheus:9090 unreachable: ConnectError")


class Sim:
    def __init__(self, spec: RolloutSpec, stable: dict[str, Any], generation: int = 1) -> None:
        self.spec = spec
        self.stable: dict[str, Any] | None = stable
        self.canary: dict[str, Any] | None = None
        self.stored: dict[str, Any] = {}
        self.generation = generation
        self.decisions: list[Decision] = []
        self.queried = 0
        self.stable_patches: list[dict[str, Any]] = []

    def has_canary(self) -> bool:
        return self.canary is not None

    @property
    def status(self) -> Status:
        return Status.from_dict(self.stored)

    def observed(self, measurement: Measurement | None) -> Observed:
        return Observed(
            rollout_name="order-rollout",
            rollout_uid="uid-1",
            generation=self.generation,
            stable=copy.deepcopy(self.stable),
            canary=copy.deepcopy(self.canary),
            measurement=measurement,
        )

    def tick(self, seconds: float, metrics: Measurement = HEALTHY) -> Decision:
        now = T0 + timedelta(seconds=seconds)
        status = self.status
        measurement = None
        if analysis_due(now, self.spec, status):
            self.queried += 1
            measurement = metrics
        decision = decide(now, self.spec, status, self.observed(measurement))
        for action in decision.actions:
            self.apply(action)
        # The API server stores JSON: what the next tick reads back went through it.
        self.stored = json.loads(json.dumps(decision.status.to_dict()))
        self.decisions.append(decision)
        return decision

    def apply(self, action: object) -> None:
        if isinstance(action, ApplyCanary):
            self.canary = copy.deepcopy(action.manifest)
        elif isinstance(action, ScaleCanary):
            assert self.canary is not None
            self.canary["spec"]["replicas"] = action.replicas
        elif isinstance(action, DeleteCanary):
            assert self.canary is not None
            self.canary = None
        elif isinstance(action, PatchStable):
            assert self.stable is not None
            self.stable_patches.append(action.patch)
            self.stable["spec"]["template"]["spec"]["containers"] = action.patch["spec"][
                "template"
            ]["spec"]["containers"]
            # The Deployment controller has not seen the new template yet.
            self.stable["metadata"]["generation"] += 1

    def stable_rolled_out(self, *, partially: bool = False) -> None:
        assert self.stable is not None
        status = self.stable["status"]
        status["observedGeneration"] = self.stable["metadata"]["generation"]
        replicas = self.stable["spec"]["replicas"]
        status["updatedReplicas"] = replicas - 1 if partially else replicas
        status["replicas"] = replicas + 1 if partially else replicas


def reasons(decision: Decision) -> list[str]:
    return [e.reason for e in decision.events]


def condition(status: Status, kind: str) -> tuple[str, str]:
    c = status.condition(kind)
    assert c is not None, kind
    return c.status, c.reason


Stable = Callable[..., dict[str, Any]]
Spec = Callable[..., RolloutSpec]


def test_a_healthy_rollout_goes_through_every_step_and_is_promoted(
    stable: Stable, rollout_spec: Spec
) -> None:
    sim = Sim(rollout_spec(), stable(replicas=4))

    d = sim.tick(0)
    assert d.status.phase == "Progressing"
    assert (d.status.step, d.status.weight, d.status.canary_replicas) == (0, 20, 1)
    assert isinstance(d.actions[0], ApplyCanary)
    assert reasons(d) == ["Started"]
    assert sim.canary is not None
    assert sim.canary["spec"]["replicas"] == 1
    assert condition(d.status, "Progressing") == ("True", "Progressing")
    assert condition(d.status, "AnalysisHealthy") == ("Unknown", "NotAnalysed")

    # The first analysis comes one interval after the step started; nothing happens before.
    d = sim.tick(5)
    assert (d.actions, d.events, sim.queried) == ((), (), 0)

    # Step 1 has no pause: a passing analysis moves on to 50% at once.
    d = sim.tick(30)
    assert sim.queried == 1
    assert d.status.analysis is not None
    assert d.status.analysis.verdict == "Pass"
    assert (d.status.step, d.status.weight, d.status.canary_replicas) == (1, 50, 4)
    assert d.actions == (ScaleCanary(4),)
    assert reasons(d) == ["StepAdvanced"]
    assert condition(d.status, "AnalysisHealthy") == ("True", "Pass")

    # Step 2 pauses 60 s: a passing analysis at 30 s into it does not move it.
    d = sim.tick(60)
    assert d.status.step == 1
    assert d.actions == ()
    d = sim.tick(90)
    assert (d.status.step, d.status.weight, d.status.canary_replicas) == (2, 80, 16)
    assert d.actions == (ScaleCanary(16),)

    # The last step passes: the stable Deployment takes the new version (never new replicas).
    d = sim.tick(120)
    assert d.status.phase == "Promoting"
    assert reasons(d) == ["Promoting"]
    (patch,) = sim.stable_patches
    assert set(patch["spec"]) == {"template"}
    assert sim.stable is not None
    assert has_new_version(sim.stable, sim.spec)
    assert sim.has_canary(), "the canary serves until the stable one has rolled out"

    d = sim.tick(125)
    assert (d.status.phase, d.actions) == ("Promoting", ())

    sim.stable_rolled_out()
    d = sim.tick(130)
    assert d.status.phase == "Succeeded"
    assert d.actions == (DeleteCanary(),)
    assert not sim.has_canary()
    assert reasons(d) == ["Succeeded"]
    assert all(e.type == "Normal" for dec in sim.decisions for e in dec.events)
    assert condition(d.status, "Completed") == ("True", "Succeeded")
    assert condition(d.status, "Progressing") == ("False", "Succeeded")
    assert d.status.weight == 0

    # Finished is finished.
    d = sim.tick(500)
    assert (d.status.phase, d.actions, d.events) == ("Succeeded", (), ())
    assert sim.stable["spec"]["replicas"] == 4


def test_failed_analyses_up_to_the_limit_roll_back(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(analysis={"failureLimit": 2}), stable())
    sim.tick(0)

    d = sim.tick(30, BROKEN)
    assert d.status.phase == "Progressing"
    assert d.status.failures == 1
    assert d.status.step == 0, "a failed analysis never advances"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "AnalysisFailed")]
    assert condition(d.status, "AnalysisHealthy") == ("False", "Fail")

    d = sim.tick(60, BROKEN)
    assert d.status.phase == "RolledBack"
    assert d.status.failures == 2
    assert d.actions == (DeleteCanary(),)
    assert not sim.has_canary()
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "RolledBack")]
    assert "error ratio 0.3 > 0.05" in d.status.message
    assert condition(d.status, "Completed") == ("False", "RolledBack")
    assert sim.stable_patches == [], "a rollback leaves the stable Deployment untouched"


def test_failures_count_across_passes(stable: Stable, rollout_spec: Spec) -> None:
    spec = rollout_spec(steps=[{"weight": 10, "pauseSeconds": 300}], analysis={"failureLimit": 2})
    sim = Sim(spec, stable())
    sim.tick(0)
    assert sim.tick(30, BROKEN).status.failures == 1
    assert sim.tick(60, HEALTHY).status.failures == 1
    assert sim.tick(90, BROKEN).status.phase == "RolledBack"


def test_inconclusive_analyses_hold_the_step_without_counting(
    stable: Stable, rollout_spec: Spec
) -> None:
    sim = Sim(rollout_spec(), stable())
    sim.tick(0)
    for t in (30, 60, 90):
        d = sim.tick(t, QUIET)
        assert d.status.analysis is not None
        assert d.status.analysis.verdict == "Inconclusive"
        assert (d.status.phase, d.status.step, d.status.failures) == ("Progressing", 0, 0)
    d = sim.tick(120, DOWN)
    assert d.status.analysis is not None
    assert d.status.analysis.verdict == "Inconclusive"
    assert "unreachable" in d.status.analysis.reason
    assert condition(d.status, "AnalysisHealthy")[0] == "Unknown"
    assert (d.status.phase, d.status.step, d.status.failures) == ("Progressing", 0, 0)
    # Traffic arrives: the step moves on.
    assert sim.tick(150, HEALTHY).status.step == 1


def test_abort_removes_the_canary_and_keeps_the_stable(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(), stable())
    sim.tick(0)
    sim.tick(30)
    sim.spec = replace(sim.spec, abort=True)
    d = sim.tick(31)
    assert d.status.phase == "Aborted"
    assert d.actions == (DeleteCanary(),)
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "Aborted")]
    assert not sim.has_canary()
    assert sim.stable_patches == []
    assert condition(d.status, "Completed") == ("False", "Aborted")
    # Clearing abort does not bring the rollout back to life.
    sim.spec = replace(sim.spec, abort=False)
    d = sim.tick(60)
    assert (d.status.phase, d.actions, d.events) == ("Aborted", (), ())


def test_abort_while_promoting_is_ignored(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(promote=True), stable())
    sim.tick(0)
    sim.spec = replace(sim.spec, abort=True)
    assert sim.tick(5).status.phase == "Promoting"


def test_pause_holds_the_step_and_resume_continues(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(), stable())
    sim.tick(0)
    sim.tick(30)  # now at step 2 (50%)
    queried = sim.queried
    sim.spec = replace(sim.spec, paused=True)
    d = sim.tick(35)
    assert d.status.phase == "Paused"
    assert reasons(d) == ["Paused"]
    assert condition(d.status, "Progressing") == ("False", "Paused")
    for t in (100, 200, 300):
        d = sim.tick(t)
        assert (d.status.phase, d.status.step, d.events) == ("Paused", 1, ())
    assert sim.queried == queried, "no analysis while paused"

    sim.spec = replace(sim.spec, paused=False)
    d = sim.tick(305)
    assert d.status.phase == "Progressing"
    assert reasons(d) == ["Resumed"]
    assert d.status.step_started_at == T0 + timedelta(seconds=305)
    # The step's full pause (60 s) and a fresh analysis count from the resume.
    assert sim.tick(335).status.step == 1
    assert sim.tick(365).status.step == 2


def test_promote_now_skips_steps_and_analysis(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(), stable())
    sim.tick(0)
    sim.spec = replace(sim.spec, promote=True)
    d = sim.tick(1)
    assert d.status.phase == "Promoting"
    assert reasons(d) == ["Promoting"]
    assert len(sim.stable_patches) == 1
    assert sim.queried == 0
    sim.stable_rolled_out()
    d = sim.tick(2)
    assert d.status.phase == "Succeeded"
    assert not sim.has_canary()


def test_promotion_waits_for_the_stable_rollout(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(promote=True), stable())
    sim.tick(0)
    # Patched but not yet observed by the Deployment controller.
    d = sim.tick(5)
    assert (d.status.phase, d.actions) == ("Promoting", ())
    sim.stable_rolled_out(partially=True)
    d = sim.tick(10)
    assert (d.status.phase, d.actions) == ("Promoting", ())
    assert len(sim.stable_patches) == 1, "the template is patched once, not every tick"
    sim.stable_rolled_out()
    assert sim.tick(15).status.phase == "Succeeded"


def test_the_same_tick_twice_gives_the_same_decision(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(), stable())
    sim.tick(0)
    sim.tick(30)
    now = T0 + timedelta(seconds=90, microseconds=123)
    observed = sim.observed(HEALTHY)
    first = decide(now, sim.spec, sim.status, observed)
    second = decide(now, sim.spec, sim.status, observed)
    assert first == second
    assert first.actions, "this tick advances a step, so it has something to do"


def test_a_tick_repeated_after_its_effects_does_nothing_more(
    stable: Stable, rollout_spec: Spec
) -> None:
    sim = Sim(rollout_spec(), stable())
    for t in (0, 30, 90):
        d = sim.tick(t)
        assert d.actions
        # Same moment again, now that the cluster and the status reflect the decision.
        again = sim.tick(t)
        assert (again.actions, again.events) == ((), ())
        assert again.status == d.status


def test_a_restart_mid_rollout_continues_from_the_stored_status(
    stable: Stable, rollout_spec: Spec
) -> None:
    sim = Sim(rollout_spec(), stable())
    sim.tick(0)
    sim.tick(30)
    sim.tick(60, BROKEN)  # step 2, one failure

    # A new operator process knows nothing but the resource's status (as JSON) and the cluster.
    stored = json.loads(json.dumps(sim.stored))
    assert sim.stable is not None
    restarted = Sim(sim.spec, copy.deepcopy(sim.stable))
    restarted.canary = copy.deepcopy(sim.canary)
    restarted.stored = stored
    assert restarted.status.failures == 1
    assert restarted.status.step == 1

    for t in (65, 90, 120):
        assert restarted.tick(t) == sim.tick(t)
    assert restarted.status.phase == "Promoting"
    assert restarted.stable == sim.stable


def test_canary_follows_the_stable_replica_count(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(), stable(replicas=4))
    sim.tick(0)
    sim.tick(30)  # 50%: 4 canary replicas for 4 stable ones
    assert sim.stable is not None
    sim.stable["status"]["replicas"] = 6  # the HPA scaled the stable Deployment up
    d = sim.tick(35)
    assert d.actions == (ScaleCanary(6),)
    assert (d.status.stable_replicas, d.status.canary_replicas) == (6, 6)
    assert sim.stable_patches == []


def test_a_canary_deleted_behind_our_back_is_recreated(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(), stable())
    sim.tick(0)
    sim.tick(30)
    sim.canary = None
    d = sim.tick(35)
    (action,) = d.actions
    assert isinstance(action, ApplyCanary)
    assert action.manifest["spec"]["replicas"] == 4


def test_a_missing_stable_deployment_waits_with_one_warning(
    stable: Stable, rollout_spec: Spec
) -> None:
    sim = Sim(rollout_spec(), stable())
    sim.stable = None
    d = sim.tick(0)
    assert (d.status.phase, d.actions) == ("Pending", ())
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "DeploymentMissing")]
    assert sim.tick(5).events == ()
    sim.stable = stable()
    assert sim.tick(10).status.phase == "Progressing"


def test_an_unknown_container_waits_with_a_warning(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(container="nope"), stable())
    d = sim.tick(0)
    assert (d.status.phase, d.actions, reasons(d)) == ("Pending", (), ["InvalidSpec"])


def test_a_canary_left_after_the_end_is_deleted(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(), stable())
    sim.stored = {"phase": "RolledBack"}
    sim.canary = {"metadata": {"name": "order-canary"}}
    d = sim.tick(0)
    assert d.actions == (DeleteCanary(),)
    assert d.status.phase == "RolledBack"


def test_condition_transition_times_move_only_on_change(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(steps=[{"weight": 10, "pauseSeconds": 600}]), stable())
    sim.tick(0)
    first = sim.status.condition("Progressing")
    sim.tick(30)
    sim.tick(60)
    later = sim.status.condition("Progressing")
    assert first is not None
    assert later is not None
    assert later.last_transition_time == first.last_transition_time == T0
    health = sim.status.condition("AnalysisHealthy")
    assert health is not None
    assert health.last_transition_time == T0 + timedelta(seconds=30)


def test_observed_generation_is_recorded(stable: Stable, rollout_spec: Spec) -> None:
    sim = Sim(rollout_spec(), stable(), generation=7)
    assert sim.tick(0).status.observed_generation == 7
    assert sim.stored["observedGeneration"] == 7


def test_status_round_trip_and_merge_patch() -> None:
    raw = {
        "phase": "Progressing",
        "step": 1,
        "weight": 50,
        "canaryReplicas": 4,
        "stableReplicas": 4,
        "stepStartedAt": "2025-03-01T12:00:30Z",
        "failures": 1,
        "analysis": {
            "at": "2025-03-01T12:01:00Z",
            "verdict": "Fail",
            "reason": "error ratio 0.3 > 0.05",
            "requests": 200.0,
            "errorRatio": 0.3,
        },
        "message": "m",
        "observedGeneration": 2,
        "conditions": [
            {
                "type": "Progressing",
                "status": "True",
                "reason": "Progressing",
                "message": "m",
                "lastTransitionTime": "2025-03-01T12:00:00Z",
            }
        ],
    }
    assert Status.from_dict(raw).to_dict() == raw
    assert merge_patch(raw, raw) == {}
    new = copy.deepcopy(raw)
    new["analysis"] = {"at": "2025-03-01T12:01:30Z", "verdict": "Inconclusive", "reason": "r"}
    patch = merge_patch(raw, new)
    assert patch == {
        "analysis": {
            "at": "2025-03-01T12:01:30Z",
            "verdict": "Inconclusive",
            "reason": "r",
            "requests": None,
            "errorRatio": None,
        }
    }
