"""Several uvicorn workers behind one port (the kit's ``workers`` setting): /metrics must count
the requests of every worker, whichever worker answers the scrape."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from shopkit.launcher import free_port

REQUEST_ROUTE = "/api/v1/categories"


def _children(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; the fields after its closing parenthesis do not.
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            pids.append(int(entry.name))
    return pids


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode(errors="replace").partition("=") for item in raw if item)
    return {key: value for key, _, value in pairs}


def _served(body: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("shop_http_requests_total{") and f'route="{REQUEST_ROUTE}"' in line
    )


def _wait_live(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"the service exited with {proc.returncode}"
        try:
            if httpx.get(url + "/livez", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the service did not come up"
        time.sleep(0.1)


def test_two_workers_share_one_metrics_view(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWEETSLICE_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        SWEETSLICE_PRODUCT_PORT=str(port),
        SWEETSLICE_PRODUCT_DATA_DIR=str(tmp_path),
        SWEETSLICE_PRODUCT_WORKERS="2",
        SWEETSLICE_PRODUCT_SEED_CATALOG="false",
        SWEETSLICE_PRODUCT_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "shop_product.main"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_live(url, proc)
        workers = [pid for pid in _children(proc.pid) if b"spawn" in _cmdline(pid)]
        assert len(workers) == 2, workers
        dirs = {_environ(pid).get("PROMETHEUS_MULTIPROC_DIR") for pid in workers}
        assert len(dirs) == 1 and None not in dirs, dirs
        metrics_dir = Path(str(dirs.pop()))

        # New connections are spread over the workers by the kernel; keep sending until both
        # have answered some, so the sums below really come from two processes.
        sent = 0
        deadline = time.monotonic() + 30
        while {f.name.rsplit("_", 1)[1] for f in metrics_dir.glob("counter_*.db")} != {
            f"{pid}.db" for pid in workers
        }:
            assert time.monotonic() < deadline, list(metrics_dir.iterdir())
            # One connection per request: httpx.get opens and closes its own.
            with ThreadPoolExecutor(max_workers=10) as pool:
                answers = list(pool.map(_status, [url + REQUEST_ROUTE] * 20))
            assert answers == [200] * 20, answers
            sent += len(answers)

        for _ in range(6):  # each scrape may be answered by either worker
            scrape = httpx.get(url + "/metrics", timeout=10)
            assert scrape.status_code == 200, scrape.text
            assert _served(scrape.text) == sent
    finally:
        proc.terminate()
        proc.wait(30)
    assert not metrics_dir.exists(), "the metrics directory the server made outlived it"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _status(url: str) -> int:
    return httpx.get(url, timeout=10).status_code
