"""The locust journeys against the real platform: locust runs headless as its own process, as
`make load` runs it, and the proof is what it writes (CSV statistics and its exit code): every
journey's requests succeed under their route names, the shapes move the user count as asked,
and an impossible SLO makes the run fail."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from shopkit.launcher import PlatformConfig

from tests.e2e.support import RunningPlatform, started_platform
from tests.load import routes

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = "tests/load/locustfile.py"
# Short pauses so that a few shoppers walk every journey, checkout and history included, in
# seconds; `make load` keeps the realistic 1-4 s.
FAST_THINKING = ("--think-min", "0.05", "--think-max", "0.25")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    config = PlatformConfig.ephemeral(
        tmp_path_factory.mktemp("load-platform"),
        # All shoppers share one address; `make load` documents the same for `make up`.
        extra_env={"gateway": {"SWEETSLICE_GATEWAY_RATE_LIMIT_PER_SECOND": "0"}},
    )
    with started_platform(config) as running:
        yield running


def run_locust(gateway: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The caller's LOCUST_* variables would change the run under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    argv = [
        sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--host", gateway,
        "--csv", str(out / "run"), "--only-summary", *FAST_THINKING, *args,
    ]  # fmt: skip
    # The exit code is what a test looks at, so a failing run must not raise.
    return subprocess.run(
        argv, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def user_counts(out: Path) -> list[int]:
    """The user count once a second, from the aggregated rows of the history CSV."""
    return [int(r["User Count"]) for r in rows(out / "run_stats_history.csv")]


def first_seen(counts: list[int], value: int) -> int:
    assert value in counts, f"never {value} users: {counts}"
    return counts.index(value)


def test_every_journey_succeeds_under_its_route_name(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    done = run_locust(
        platform.gateway, tmp_path,
        "--shape", "step", "--users", "6", "--step-users", "2", "--step-seconds", "6",
        "--spawn-rate", "6", "--run-time", "24s", "--html", str(tmp_path / "report.html"),
    )  # fmt: skip
    log = done.stderr[-4000:]
    assert done.returncode == 0, log
    assert "SLO met" in done.stderr, log

    stats = {(r["Type"], r["Name"]): r for r in rows(tmp_path / "run_stats.csv")}
    total = stats.pop(("", "Aggregated"))
    for request in routes.EVERY_RUN:
        assert request in stats, f"{request} never requested; rows: {sorted(stats)}"
        assert int(stats[request]["Request Count"]) > 0, request
    # Named by template: no row per product, order or search term.
    assert set(stats) <= {*routes.EVERY_RUN, *routes.SOMETIMES}, sorted(stats)
    failures = {k: r["Failure Count"] for k, r in stats.items() if r["Failure Count"] != "0"}
    assert not failures, (failures, rows(tmp_path / "run_failures.csv"))
    assert total["Failure Count"] == "0"
    assert int(total["Request Count"]) > 200, total
    assert rows(tmp_path / "run_exceptions.csv") == []
    assert "Locust" in (tmp_path / "report.html").read_text()

    # The step shape: 2, then 4, then 6 shoppers, one step every 6 s.
    counts = user_counts(tmp_path)
    assert first_seen(counts, 2) < first_seen(counts, 4) < first_seen(counts, 6), counts
    assert max(counts) == 6, counts


def test_an_slo_the_run_cannot_meet_fails_it(platform: RunningPlatform, tmp_path: Path) -> None:
    done = run_locust(
        platform.gateway, tmp_path,
        "--shape", "spike", "--users", "4", "--spike-base-users", "1", "--spike-start", "3",
        "--spike-seconds", "3", "--spawn-rate", "4", "--run-time", "9s", "--slo-p95-ms", "1",
    )  # fmt: skip
    log = done.stderr[-4000:]
    assert done.returncode == 1, log
    assert "SLO not met: p95" in done.stderr, log
    # The requests themselves were fine: only the latency limit failed the run.
    total = rows(tmp_path / "run_stats.csv")[-1]
    assert total["Name"] == "Aggregated" and total["Failure Count"] == "0", total

    # The spike shape: one shopper, all four at once, then one again.
    counts = user_counts(tmp_path)
    peak = first_seen(counts, 4)
    assert 1 in counts[:peak] and 1 in counts[peak:], counts
    assert max(counts) == 4, counts
