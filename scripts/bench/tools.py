"""What the bench drives besides the platform: wrk, nginx as the proxy floor, a FastAPI
hello-world, an OTLP/HTTP sink; plus the machine description that goes into the report."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WRK_DIR = HERE / "wrk"
APT_PACKAGES = ("wrk", "nginx")


class ToolError(RuntimeError):
    """The bench cannot run (a tool is missing or broke): the only reason it exits non-zero."""


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def ensure_tools() -> dict[str, str]:
    """wrk and nginx from Debian; installed with apt-get when missing and running as root."""
    missing = [name for name in APT_PACKAGES if not (_nginx_binary() if name == "nginx" else
               shutil.which(name))]  # fmt: skip
    if missing:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise ToolError(
                f"missing {', '.join(missing)}: install the Debian packages "
                f"(apt-get install {' '.join(APT_PACKAGES)}) or run the bench as root"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", *APT_PACKAGES]
        subprocess.run(install, check=True, env=env)  # noqa: S603 - fixed argv
    wrk, nginx = shutil.which("wrk"), _nginx_binary()
    if not wrk or not nginx:
        raise ToolError("wrk or nginx still missing after apt-get install")
    return {"wrk": wrk, "nginx": nginx}


def _first_line(argv: Sequence[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    return (done.stdout + done.stderr).strip().splitlines()[0]


def machine(tools: dict[str, str]) -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": f"{os.cpu_count()} (usable by this process: {len(os.sched_getaffinity(0))})",
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": _first_line([tools["wrk"], "-v"]).split(" [")[0],
        "nginx": _first_line([tools["nginx"], "-v"]),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def pinned(cpus: str | None, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


@dataclass
class WrkRun:
    command: str
    data: dict[str, object]

    @property
    def rps(self) -> float:
        return float(self.data["rps"])  # type: ignore[arg-type]

    def counted(self, key: str) -> int:
        return int(self.data["counted"][key])  # type: ignore[index]

    def ms(self, key: str) -> float:
        return float(self.data[key])  # type: ignore[arg-type]


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
    script: str = "get.lua",
    args: Sequence[str] = (),
    cpus: str | None = None,
    shown: dict[str, str] | None = None,
) -> WrkRun:
    """One wrk run; ``shown`` replaces parts of the printed command (temporary paths)."""
    argv = pinned(
        cpus,
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_DIR / script),
            url,
            *(["--", *args] if args else []),
        ],
    )
    done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH-JSON ")]
    if done.returncode != 0 or not lines:
        raise ToolError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    command = " ".join(argv).replace(str(REPO) + "/", "")
    for old, new in (shown or {}).items():
        command = command.replace(old, new)
    return WrkRun(command, json.loads(lines[-1].removeprefix("BENCH-JSON ")))


def wait_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ToolError(f"{name} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise ToolError(f"{name} did not listen on {port} within {timeout:.0f}s")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream product {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://product;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(binary: str, workdir: Path, port: int, upstream: int) -> Iterator[str]:
    """nginx in the foreground as a keep-alive reverse proxy to one upstream port, one worker
    (like the gateway's one process), everything it writes kept in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=port, upstream=upstream))
    argv = [binary, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        wait_port(port, proc, "nginx")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextlib.contextmanager
def python_server(
    module: str, port: int, log: Path, *, cpus: str | None = None, extra: Sequence[str] = ()
) -> Iterator[str]:
    """One of the bench's own small Python servers (hello-world, OTLP sink)."""
    argv = pinned(cpus, [sys.executable, str(HERE / module), "--port", str(port), *extra])
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out)  # noqa: S603
    try:
        wait_port(port, proc, module)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
