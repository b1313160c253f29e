"""The load shapes' schedules: users wanted at each second, and when a run ends."""

from __future__ import annotations

import pytest

from tests.load.shapes import Plan, target


def users_over(shape: str, plan: Plan, seconds: int) -> list[int | None]:
    wanted = (target(shape, plan, float(t)) for t in range(seconds))
    return [w[0] if w else None for w in wanted]


def test_constant_holds_the_users_until_the_run_time() -> None:
    plan = Plan(users=5, spawn_rate=2, run_time=3)
    assert [target("constant", plan, t) for t in (0, 2.9, 3)] == [(5, 2), (5, 2), None]
    assert target("constant", Plan(users=5, spawn_rate=2, run_time=None), 1e6) == (5, 2)


def test_step_adds_users_each_step_up_to_the_ceiling() -> None:
    plan = Plan(users=25, spawn_rate=5, run_time=50, step_users=10, step_seconds=10)
    assert users_over("step", plan, 52) == ([10] * 10 + [20] * 10 + [25] * 30 + [None] * 2)


def test_spike_jumps_to_all_users_at_once_and_falls_back() -> None:
    plan = Plan(users=50, spawn_rate=2, run_time=9)
    # Defaults: a fifth of the users around a spike over the middle third of the run.
    assert users_over("spike", plan, 10) == [10] * 3 + [50] * 3 + [10] * 3 + [None]
    assert target("spike", plan, 0) == (10, 2)
    assert target("spike", plan, 3) == (50, 50.0)  # arrives within a second
    assert target("spike", plan, 6) == (10, 50.0)  # and leaves as fast
    custom = Plan(
        users=8, spawn_rate=1, run_time=10, spike_base_users=0, spike_start=2, spike_seconds=1
    )
    assert users_over("spike", custom, 4) == [0, 0, 8, 0]


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"users": 0}, "users must be"),
        ({"spawn_rate": 0}, "spawn rate"),
        ({"run_time": 0}, "run time"),
        ({"step_users": 0}, "a step"),
        ({"step_seconds": 0}, "a step"),
        ({"spike_base_users": 11}, "base load"),
        ({"spike_start": -1}, "before the run"),
        ({"spike_seconds": 0}, "spike must last"),
    ],
)
def test_impossible_plans_are_refused(kwargs: dict[str, float], complaint: str) -> None:
    base: dict[str, float] = {"users": 10, "spawn_rate": 1, "run_time": 60}
    with pytest.raises(ValueError, match=complaint):
        Plan(**{**base, **kwargs})  # type: ignore[arg-type]


def test_an_unknown_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown shape"):
        target("sawtooth", Plan(users=1, spawn_rate=1, run_time=1), 0)
