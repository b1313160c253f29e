"""A real Prometheus server (the Debian package) on loopback, for tests that query one.

The telemetry tests point it at the running platform; the operator tests at a /metrics endpoint
they control. Each gives the scrape configuration; the server gets a throw-away data folder.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the lock
from shopkit.launcher import free_port

from tests.processes import stop_process, wait_until_answering


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail(
            "Prometheus is not installed: install the Debian package 'prometheus' "
            "(apt-get install prometheus; .ci/run does it)"
        )
    return found


class PrometheusServer:
    """Started with `config` (prometheus.yml as a dict), stopped by `stop()`."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def start(self) -> None:
        argv = [
            prometheus_binary(),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_until_answering(
            self.proc, self.url + "/-/ready", what="prometheus", timeout=30, log_path=self.log_path
        )

    def stop(self) -> None:
        self.http.close()
        stop_process(self.proc, grace=15)

    def api(self, path: str, **params: str) -> Any:
        resp = self.http.get("/api/v1/" + path, params=params)
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "success", (path, params, body)
        return body["data"]

    def series(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result
