"""The ServiceRollout status as typed values; all rollout state lives here, nowhere else."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

from shop_operator.reconcile.analysis import Result

Phase = Literal[
    "Pending", "Progressing", "Paused", "Promoting", "Succeeded", "RolledBack", "Aborted"
]
PHASES: frozenset[str] = frozenset(get_args(Phase))
TERMINAL: frozenset[str] = frozenset({"Succeeded", "RolledBack", "Aborted"})
ConditionStatus = Literal["True", "False", "Unknown"]


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class AnalysisStatus(Result):
    """An analysis's result as the status records it: with when it was made."""

    at: datetime

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "at": format_time(self.at),
            "verdict": self.verdict,
            "reason": self.reason,
        }
        for key, value in (
            ("requests", self.requests),
            ("errorRatio", self.error_ratio),
            ("p95", self.p95),
            ("p99", self.p99),
        ):
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AnalysisStatus | None:
        at = parse_time(raw.get("at"))
        verdict = raw.get("verdict")
        if at is None or verdict not in ("Pass", "Fail", "Inconclusive"):
            return None

        def num(key: str) -> float | None:
            value = raw.get(key)
            return None if value is None else float(value)

        return cls(
            at=at,
            verdict=verdict,
            reason=str(raw.get("reason") or ""),
            requests=num("requests"),
            error_ratio=num("errorRatio"),
            p95=num("p95"),
            p99=num("p99"),
        )


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": format_time(self.last_transition_time),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Condition | None:
        status = raw.get("status")
        when = parse_time(raw.get("lastTransitionTime"))
        if not raw.get("type") or status not in ("True", "False", "Unknown") or when is None:
            return None
        return cls(
            type=str(raw["type"]),
            status=status,
            reason=str(raw.get("reason") or ""),
            message=str(raw.get("message") or ""),
            last_transition_time=when,
        )


@dataclass(frozen=True)
class Status:
    phase: Phase = "Pending"
    step: int = 0
    weight: int = 0
    canary_replicas: int = 0
    stable_replicas: int | None = None
    step_started_at: datetime | None = None
    failures: int = 0
    analysis: AnalysisStatus | None = None
    message: str = ""
    observed_generation: int | None = None
    conditions: tuple[Condition, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "phase": self.phase,
            "step": self.step,
            "weight": self.weight,
            "canaryReplicas": self.canary_replicas,
            "failures": self.failures,
            "message": self.message,
            "conditions": [c.to_dict() for c in self.conditions],
        }
        if self.stable_replicas is not None:
            out["stableReplicas"] = self.stable_replicas
        if self.step_started_at is not None:
            out["stepStartedAt"] = format_time(self.step_started_at)
        if self.analysis is not None:
            out["analysis"] = self.analysis.to_dict()
        if self.observed_generation is not None:
            out["observedGeneration"] = self.observed_generation
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Status:
        raw = raw or {}
        raw_phase = raw.get("phase")
        phase = cast(Phase, raw_phase) if raw_phase in PHASES else "Pending"
        analysis = raw.get("analysis")
        conditions = (Condition.from_dict(c) for c in raw.get("conditions") or [])
        stable = raw.get("stableReplicas")
        generation = raw.get("observedGeneration")
        return cls(
            phase=phase,
            step=int(raw.get("step") or 0),
            weight=int(raw.get("weight") or 0),
            canary_replicas=int(raw.get("canaryReplicas") or 0),
            stable_replicas=None if stable is None else int(stable),
            step_started_at=parse_time(raw.get("stepStartedAt")),
            failures=int(raw.get("failures") or 0),
            analysis=AnalysisStatus.from_dict(analysis) if isinstance(analysis, Mapping) else None,
            message=str(raw.get("message") or ""),
            observed_generation=None if generation is None else int(generation),
            conditions=tuple(c for c in conditions if c is not None),
        )

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    def with_condition(
        self, kind: str, status: ConditionStatus, reason: str, message: str, now: datetime
    ) -> Status:
        """Set one condition; its transition time moves only when its status changes."""
        old = self.condition(kind)
        when = old.last_transition_time if old is not None and old.status == status else now
        new = Condition(kind, status, reason, message, when)
        others = tuple(c for c in self.conditions if c.type != kind)
        ordered = sorted((*others, new), key=lambda c: _CONDITION_ORDER.get(c.type, 99))
        return replace(self, conditions=tuple(ordered))


_CONDITION_ORDER = {"Progressing": 0, "AnalysisHealthy": 1, "Completed": 2}


def merge_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns `old` into `new` (keys gone from `new` become null)."""
    old = old or {}
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
