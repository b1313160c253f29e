"""helm and checkov for the static chart tests (tests/deploy/test_charts.py).

The charts are copied to a temporary directory and their file:// dependencies vendored there
(scripts/chart-deps.sh), so the tests never write into the repository's charts/ and always
render what the sources say now, not a stale vendored package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.deploy.manifests import Manifest, parse_manifests

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "shop"
NAMESPACE = "sweetslice"
SERVICES = ("user", "product", "cart", "order", "payment", "notification", "gateway")
DATABASE_SERVICES = ("user", "product", "cart", "order", "payment", "notification")
# The values a service chart needs alone (the umbrella creates and names the token's Secret).
SERVICE_CHART_SETS = ("global.internalToken.existingSecret=x",)


class ToolError(Exception):
    """A build script or a tool run failed; the message carries its output."""


def built(variable: str, script: str) -> Path:
    """The path a build script prints (it builds only when its cache is empty), or `variable`
    from the environment when set."""
    given = os.environ.get(variable)
    if given:
        return Path(given)
    result = subprocess.run(
        [str(ROOT / "scripts" / script)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ToolError(f"scripts/{script} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def scenario_values() -> dict[str, list[Path]]:
    """The umbrella's values scenarios: its defaults, the kind values, and charts/sweetslice/ci/
    (helm's convention for the value files CI installs the chart with)."""
    found: dict[str, list[Path]] = {"default": [], "kind": [ROOT / "k8s" / "values-kind.yaml"]}
    for path in sorted((ROOT / "charts" / "sweetslice" / "ci").glob("*.yaml")):
        found[path.stem] = [path]
    return found


@dataclass
class Charts:
    """helm over a vendored copy of charts/, with each scenario rendered once."""

    helm: Path
    root: Path
    _rendered: dict[str, list[Manifest]] = field(default_factory=dict)
    _texts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def prepare(cls, helm: Path, dest: Path) -> Charts:
        root = dest / "charts"
        # The vendored packages are left behind: chart-deps.sh makes them from the sources.
        shutil.copytree(ROOT / "charts", root, ignore=shutil.ignore_patterns("*.tgz"))
        result = subprocess.run(
            [str(ROOT / "scripts" / "chart-deps.sh"), str(root)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "HELM": str(helm)},
        )
        if result.returncode != 0:
            raise ToolError(f"chart-deps.sh failed:\n{result.stdout}\n{result.stderr}")
        return cls(helm, root)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.helm), *args], capture_output=True, text=True, check=False, timeout=120
        )

    @staticmethod
    def _options(values: Sequence[Path], sets: Sequence[str]) -> list[str]:
        options: list[str] = []
        for path in values:
            options += ["-f", str(path)]
        for assignment in sets:
            options += ["--set", assignment]
        return options

    def lint(
        self, chart: str, values: Sequence[Path] = (), sets: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        return self.run("lint", "--strict", str(self.root / chart), *self._options(values, sets))

    def template(
        self, chart: str, values: Sequence[Path] = (), sets: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "template",
            RELEASE,
            str(self.root / chart),
            "--namespace",
            NAMESPACE,
            *self._options(values, sets),
        )

    def render_text(self, scenario: str) -> str:
        if scenario not in self._texts:
            result = self.template("sweetslice", scenario_values()[scenario])
            if result.returncode != 0:
                raise ToolError(f"helm template ({scenario}) failed:\n{result.stderr}")
            self._texts[scenario] = result.stdout
        return self._texts[scenario]

    def render(self, scenario: str) -> list[Manifest]:
        """The umbrella's objects with a scenario's values (release `shop`)."""
        if scenario not in self._rendered:
            self._rendered[scenario] = parse_manifests(self.render_text(scenario))
        return self._rendered[scenario]


@dataclass
class CheckovRun:
    """One checkov run over a directory of rendered files, its results by file name."""

    summary: dict[str, Any]
    failed: dict[str, list[dict[str, Any]]]
    passed: dict[str, int]


def run_checkov(checkov: Path, directory: Path, skips: Sequence[str]) -> CheckovRun:
    command = [
        str(checkov),
        "--directory",
        str(directory),
        "--framework",
        "kubernetes",
        "--compact",
        "--output",
        "json",
        # Offline: no mappings or guidelines from the vendor's platform.
        "--skip-download",
    ]
    if skips:
        command += ["--skip-check", ",".join(sorted(skips))]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    # Exit status 1 means "some checks failed"; anything else, or no JSON, is a broken run.
    if result.returncode not in (0, 1):
        raise ToolError(f"checkov exited {result.returncode}:\n{result.stderr[-4000:]}")
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise ToolError(f"checkov printed no JSON ({error}):\n{result.stdout[:2000]}") from error
    if isinstance(report, list):  # one entry per framework; only kubernetes was asked for
        (report,) = [r for r in report if r.get("check_type") == "kubernetes"]
    results = report.get("results") or {}
    failed: dict[str, list[dict[str, Any]]] = {}
    for check in results.get("failed_checks") or []:
        failed.setdefault(Path(check["file_path"]).name, []).append(check)
    passed: dict[str, int] = {}
    for check in results.get("passed_checks") or []:
        name = Path(check["file_path"]).name
        passed[name] = passed.get(name, 0) + 1
    return CheckovRun(report["summary"], failed, passed)
