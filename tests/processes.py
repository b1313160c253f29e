"""The test suites' own child servers (Prometheus, Toxiproxy, the fake Consul): started by the
suite, ready once an HTTP endpoint answers, stopped with a grace period."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import httpx


def _log_tail(log_path: Path | None) -> str:
    if log_path is None or not log_path.exists():
        return ""
    return ": " + log_path.read_text(errors="replace")[-2000:]


def wait_until_answering(
    proc: subprocess.Popen[bytes],
    url: str,
    *,
    what: str,
    timeout: float,
    log_path: Path | None = None,
) -> None:
    """Returns once ``GET url`` answers 200. A child that exits first, or does not answer within
    ``timeout`` (it is then killed), fails with the tail of its log."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise RuntimeError(f"{what} exited with {code} before answering{_log_tail(log_path)}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            stop_process(proc, grace=0)
            raise TimeoutError(f"{what} did not answer within {timeout:.0f}s{_log_tail(log_path)}")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[bytes] | None, *, grace: float = 10.0) -> None:
    """SIGTERM, and SIGKILL if it is still there after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    if grace > 0:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
            return
    proc.kill()
    proc.wait()
