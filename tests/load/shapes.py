"""How many simulated users a load run wants at each moment: the plain mode (``--users`` at
``--spawn-rate`` for ``--run-time``), a step ramp and a spike. Plain functions of the elapsed
time, so the suite checks them without locust; the locustfile's shape class asks them once a
second. ``None`` ends the run."""

from __future__ import annotations

import math
from dataclasses import dataclass

SHAPES = ("constant", "step", "spike")
Target = tuple[int, float] | None  # (users, users started or stopped per second)


@dataclass(frozen=True)
class Plan:
    users: int  # the most users the run reaches
    spawn_rate: float
    run_time: float | None  # seconds; None runs until stopped
    # step: users added per step and how long each step holds
    step_users: int = 10
    step_seconds: float = 30.0
    # spike: the load around the spike, when it starts and how long it lasts; None derives
    # them from the run (a fifth of the users, the middle third of the run)
    spike_base_users: int | None = None
    spike_start: float | None = None
    spike_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.users < 1 or self.spawn_rate <= 0:
            raise ValueError("users must be at least 1 and the spawn rate above 0")
        if self.run_time is not None and self.run_time <= 0:
            raise ValueError("the run time must be above 0")
        if self.step_users < 1 or self.step_seconds <= 0:
            raise ValueError("a step adds at least one user and lasts more than 0 s")
        base = self.spike_base_users
        if base is not None and not 0 <= base <= self.users:
            raise ValueError("the spike's base load must be between 0 and --users")
        if self.spike_start is not None and self.spike_start < 0:
            raise ValueError("the spike cannot start before the run")
        if self.spike_seconds is not None and self.spike_seconds <= 0:
            raise ValueError("the spike must last more than 0 s")

    def ended(self, elapsed: float) -> bool:
        return self.run_time is not None and elapsed >= self.run_time


def constant(plan: Plan, elapsed: float) -> Target:
    if plan.ended(elapsed):
        return None
    return plan.users, plan.spawn_rate


def step(plan: Plan, elapsed: float) -> Target:
    """``step_users`` more users every ``step_seconds`` up to ``users``, held to the end: where
    latency starts to bend shows in the report's charts as a knee at one step."""
    if plan.ended(elapsed):
        return None
    steps = 1 + math.floor(elapsed / plan.step_seconds)
    return min(plan.users, steps * plan.step_users), plan.spawn_rate


def spike(plan: Plan, elapsed: float) -> Target:
    """A base load, then all ``users`` at once for a while, then the base load again: whether
    the platform sheds cleanly and recovers its latency after the burst."""
    if plan.ended(elapsed):
        return None
    base = plan.spike_base_users
    if base is None:
        base = max(1, plan.users // 5)
    span = plan.run_time if plan.run_time is not None else 180.0
    start = plan.spike_start if plan.spike_start is not None else span / 3
    seconds = plan.spike_seconds if plan.spike_seconds is not None else span / 3
    # A spike arrives and leaves within about a second, whatever the ramp of the base load.
    sudden = max(float(plan.users), plan.spawn_rate)
    if elapsed < start:
        return base, plan.spawn_rate
    if elapsed < start + seconds:
        return plan.users, sudden
    return base, sudden


def target(shape: str, plan: Plan, elapsed: float) -> Target:
    if shape == "constant":
        return constant(plan, elapsed)
    if shape == "step":
        return step(plan, elapsed)
    if shape == "spike":
        return spike(plan, elapsed)
    raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")
