"""Consul as the discovery source and the registry every instance joins (issue 7).

Registration: at start an instance registers itself with the Consul agent - its service name, a
unique instance id, the address and port others reach it at, its version as a tag and meta - with
an HTTP check on its own ``/readyz`` and a deregister-critical-after timeout, so an instance that
died without a word leaves the registry by itself. A keeper puts the registration back whenever
the agent has lost it (an agent restarted without its state, a reaped instance that recovered).
On Kubernetes the preStop hook (``python -m shop_<name>.main deregister``, another process in
the same pod) takes the instance out of Consul before SIGTERM, while it still serves, and leaves
a mark in the temporary directory that tells the keeper not to put it back. Without the hook
(``make up``), the instance deregisters at shutdown, once it has stopped accepting connections:
callers move on as soon as a connection is refused.

Discovery: one blocking query per peer on ``/v1/health/service/<peer>?passing`` keeps the passing
instances current without polling: Consul answers as soon as the set changes, or after ``wait``
with nothing new. An answer that goes backwards resets the index, as Consul's documentation asks,
and so does any failed query (the agent that answers next may have restarted). While Consul is
unreachable the last known instances stay in use; an answer with no passing instance at all is
treated the same way - routing to instances that fail their checks is no worse than refusing
every call, and often better (a service whose broker is down fails ``/readyz`` but still answers
reads).

Register through one agent: with several Consul servers, point the services at a client agent
(one per node), not at a Service that spreads requests over the servers, or one instance may be
registered on several of them and deregistered from one.

The client is py-consul's API layer over the kit's own aiohttp transport: one session, and a
timeout per kind of call (a blocking query is held open up to ``wait`` plus Consul's jitter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partialmethod
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import consul.base

from shopkit import VERSION
from shopkit.discovery import Discovery, Pools, base_url
from shopkit.settings import ServiceSettings

log = logging.getLogger("shopkit.consul")


def go_duration(seconds: float) -> str:
    """Consul's duration strings: ``10s``, or ``1500ms`` where whole seconds would round."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


class _Transport(consul.base.HTTPClient):  # type: ignore[misc]
    """py-consul's requests, sent on a session of ours with one total timeout per call."""

    def __init__(
        self, address: str, session: aiohttp.ClientSession, timeout: aiohttp.ClientTimeout
    ) -> None:
        parts = urlsplit(address if "//" in address else f"//{address}")
        scheme = parts.scheme or "http"
        port = parts.port or (443 if scheme == "https" else 8500)
        super().__init__(parts.hostname or "127.0.0.1", port, scheme)
        self._session = session
        self._timeout = timeout

    async def _call(
        self,
        method: str,
        callback: Callable[[Any], Any],
        path: str,
        *,
        params: Any = None,
        **kw: Any,
    ) -> Any:
        async with self._session.request(
            method,
            self.uri(path, params),
            headers=kw.get("headers"),
            data=kw.get("data"),
            timeout=self._timeout,
        ) as resp:
            body = await resp.text(encoding="utf-8", errors="replace")
            return callback(consul.base.Response(resp.status, resp.headers, body))

    # py-consul calls these with the callback and path by position, everything else by name.
    get = partialmethod(_call, "GET")
    put = partialmethod(_call, "PUT")
    delete = partialmethod(_call, "DELETE")
    post = partialmethod(_call, "POST")

    def close(self) -> None:
        """The session is the caller's to close."""


class _Client(consul.base.Consul):  # type: ignore[misc]
    def __init__(self, transport: _Transport, token: str) -> None:
        self._transport = transport
        super().__init__(
            host=transport.host, port=transport.port, scheme=transport.scheme, token=token or None
        )
        # py-consul lets CONSUL_HTTP_TOKEN from the environment win; the setting is the token.
        self.token = token or None

    def http_connect(self, *args: Any, **kwargs: Any) -> _Transport:
        return self._transport


class ConsulAgent:
    """The calls Sweet Slice makes to Consul's HTTP API, typed."""

    def __init__(
        self,
        address: str,
        *,
        session: aiohttp.ClientSession,
        token: str = "",
        timeout: float = 5.0,
        wait_seconds: float = 30.0,
    ) -> None:
        self.wait_seconds = wait_seconds
        calls = aiohttp.ClientTimeout(total=timeout)
        # Consul holds a blocking query up to wait plus a jitter of up to wait/16.
        watches = aiohttp.ClientTimeout(total=wait_seconds * 17 / 16 + timeout)
        self._calls = _Client(_Transport(address, session, calls), token)
        self._watches = _Client(_Transport(address, session, watches), token)

    async def passing(self, service: str, *, index: int = 0) -> tuple[int, list[str]]:
        """Base URLs of the instances of ``service`` whose checks all pass, and the index of that
        answer. With an ``index``, Consul holds the answer until the set moves past it or
        ``wait`` elapses."""
        client = self._watches if index else self._calls
        raw_index, entries = await client.health.service(
            service, passing=True, index=index or None, wait=go_duration(self.wait_seconds)
        )
        urls = []
        for entry in entries or ():
            svc = entry["Service"]
            # An empty service address means "the node's address", as in Consul's own DNS.
            address = svc.get("Address") or entry["Node"]["Address"]
            urls.append(base_url("http", address, int(svc["Port"])))
        return int(raw_index), urls

    async def register(self, registration: Registration) -> None:
        check = consul.Check.http(
            registration.check_url,
            go_duration(registration.check_interval_seconds),
            timeout=go_duration(registration.check_timeout_seconds),
            deregister=go_duration(registration.deregister_after_seconds),
        )
        await self._calls.agent.service.register(
            registration.service,
            service_id=registration.instance_id,
            address=registration.address,
            port=registration.port,
            tags=list(registration.tags),
            meta=dict(registration.meta),
            check=check,
            replace_existing_checks=True,
        )

    async def registered(self, instance_id: str) -> bool:
        services = await self._calls.agent.services()
        return instance_id in (services or {})

    async def deregister(self, instance_id: str) -> bool:
        """False when the agent did not know the instance (already gone)."""
        return bool(await self._calls.agent.service.deregister(instance_id))


@dataclass(frozen=True)
class Registration:
    service: str
    instance_id: str
    address: str
    port: int
    tags: tuple[str, ...]
    meta: tuple[tuple[str, str], ...]
    check_interval_seconds: float
    check_timeout_seconds: float
    deregister_after_seconds: float

    @property
    def check_url(self) -> str:
        return base_url("http", self.address, self.port) + "/readyz"


def advertised_address(settings: ServiceSettings) -> str:
    """Where other instances reach this one: the setting, else the address it listens on, else
    (listening everywhere) the address its host name resolves to."""
    if settings.advertise_address:
        return settings.advertise_address
    if settings.host not in {"", "0.0.0.0", "::"}:  # noqa: S104 - compared, not bound
        return settings.host
    return socket.gethostbyname(socket.gethostname())


def instance_id(settings: ServiceSettings) -> str:
    """Unique per instance and the same for every process of it: the preStop hook, a separate
    process in the same pod, must name the instance the server registered."""
    return settings.instance_id or f"{settings.service_name}-{socket.gethostname()}-{settings.port}"


def registration_for(settings: ServiceSettings) -> Registration:
    return Registration(
        service=settings.service_name,
        instance_id=instance_id(settings),
        address=advertised_address(settings),
        port=settings.port,
        tags=(f"v{VERSION}", settings.environment),
        meta=(("version", VERSION), ("environment", settings.environment)),
        check_interval_seconds=settings.consul_check_interval_seconds,
        check_timeout_seconds=settings.consul_check_timeout_seconds,
        deregister_after_seconds=settings.consul_deregister_after_seconds,
    )


def _backoff(failures: int) -> float:
    return min(10.0, 0.5 * 2.0 ** min(failures, 5)) * random.uniform(0.5, 1.0)


class ConsulDiscovery(Pools):
    """The passing instances of each peer, kept current by one blocking query per peer."""

    def __init__(
        self,
        agent: ConsulAgent,
        services: Iterable[str],
        *,
        caller: str = "",
        eject_seconds: float = 2.0,
        first_answer_seconds: float = 5.0,
    ) -> None:
        super().__init__(caller, eject_seconds=eject_seconds)
        self._agent = agent
        self._services = tuple(dict.fromkeys(services))
        self._answered = {name: asyncio.Event() for name in self._services}
        self._first_answer_seconds = first_answer_seconds
        self._patient_until = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._patient_until = time.monotonic() + self._first_answer_seconds
        self._tasks = [
            asyncio.create_task(self._watch(name), name=f"consul-watch-{name}")
            for name in self._services
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def resolve(self, service: str, *, avoid: Iterable[str] = ()) -> str:
        answered = self._answered.get(service)
        patience = self._patient_until - time.monotonic()
        if answered is not None and not answered.is_set() and patience > 0:
            # Just started: wait a moment for Consul's first answer rather than fail the call;
            # once that moment is over, calls fail at once until Consul answers.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answered.wait(), patience)
        return await super().resolve(service, avoid=tuple(avoid))

    async def _watch(self, service: str) -> None:
        index = 0
        failures = 0
        while True:
            try:
                new_index, instances = await self._agent.passing(service, index=index)
            except Exception as exc:
                # Whatever went wrong (network, a 5xx, an odd answer), the watch must go on.
                failures += 1
                self._refresh_failed(service)
                if failures == 1:
                    log.warning(
                        "consul unreachable for %s (keeping %d known instances): %s",
                        service,
                        self.instance_count(service),
                        type(exc).__name__,
                    )
                # The agent that answers next may be another, or restarted with its index small
                # again: ask without blocking first.
                index = 0
                await asyncio.sleep(_backoff(failures))
                continue
            if failures:
                log.info("consul answers again for %s", service)
            failures = 0
            # Consul's rules: an index that went backwards means start over; never block on 0.
            index = 0 if new_index < index else max(new_index, 1)
            if instances or not self.instance_count(service):
                self._set(service, instances)
            else:
                log.warning(
                    "consul reports no passing instance of %s: keeping the last known %d",
                    service,
                    self.instance_count(service),
                )
            self._answered[service].set()
            if index == 0:
                # A reset asks again at once; a pause keeps a flapping agent from a busy loop.
                await asyncio.sleep(0.1)


def _left_mark(instance: str) -> Path:
    return Path(tempfile.gettempdir()) / "sweetslice-consul" / f"{instance}.left"


class Registrar:
    """Keeps this instance registered while it runs; deregisters it at the end."""

    def __init__(self, agent: ConsulAgent, registration: Registration) -> None:
        self._agent = agent
        self.registration = registration
        self._mark = _left_mark(registration.instance_id)

    def has_left(self) -> bool:
        """The preStop hook took this instance out of Consul: it must not come back."""
        return self._mark.exists()

    async def keep(self) -> None:
        """Registers, then every check interval makes sure the agent still knows us."""
        # A mark from an earlier run of this instance (a container restarted in its pod,
        # whose /tmp outlives it) is not about this one.
        self._mark.unlink(missing_ok=True)
        failures = 0
        registered = False
        every = max(1.0, self.registration.check_interval_seconds)
        instance = self.registration.instance_id
        while not self.has_left():
            try:
                if not registered or not await self._agent.registered(instance):
                    if self.has_left():  # the hook may have run while we asked
                        return
                    await self._agent.register(self.registration)
                    log.info("registered %s in consul as %s", self.registration.service, instance)
                registered = True
                failures = 0
                await asyncio.sleep(every)
            except Exception as exc:
                # Whatever went wrong, the keeper tries again later: it must not die.
                failures += 1
                if failures == 1:
                    log.warning("consul registration failed, retrying: %r", exc)
                await asyncio.sleep(_backoff(failures))

    async def deregister(self, *, for_good: bool = False) -> None:
        """Leaves Consul. ``for_good`` (the preStop hook) also tells the server's keeper, in
        another process of the same pod, not to register it again."""
        if for_good:
            self._mark.parent.mkdir(parents=True, exist_ok=True)
            self._mark.touch()
        try:
            known = await self._agent.deregister(self.registration.instance_id)
        except Exception as exc:
            # Not fatal: Consul reaps the instance after deregister-critical-after anyway.
            log.warning("consul deregistration failed: %r", exc)
            return
        log.info(
            "deregistered %s from consul%s",
            self.registration.instance_id,
            "" if known else " (it was not registered)",
        )


def agent_for(settings: ServiceSettings, session: aiohttp.ClientSession) -> ConsulAgent:
    return ConsulAgent(
        settings.consul_http_addr,
        session=session,
        token=settings.consul_token.get_secret_value(),
        timeout=settings.http_timeout_seconds,
        wait_seconds=settings.consul_wait_seconds,
    )


@asynccontextmanager
async def consul_discovery(
    settings: ServiceSettings, peers: Iterable[str]
) -> AsyncIterator[Discovery]:
    """Peers from Consul and this instance registered there, until exit."""
    async with aiohttp.ClientSession() as session:
        agent = agent_for(settings, session)
        discovery = ConsulDiscovery(agent, peers, caller=settings.service_name)
        registrar = Registrar(agent, registration_for(settings))
        await discovery.start()
        keeper = asyncio.create_task(registrar.keep(), name="consul-registration")
        try:
            yield discovery
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await registrar.deregister()
            await discovery.close()


async def deregister_command(settings: ServiceSettings, drain_seconds: float) -> None:
    """The preStop hook: leave Consul now, then keep serving while watchers and in-flight
    requests move on, before Kubernetes sends SIGTERM."""
    if settings.discovery == "consul":
        async with aiohttp.ClientSession() as session:
            registrar = Registrar(agent_for(settings, session), registration_for(settings))
            await registrar.deregister(for_good=True)
    await asyncio.sleep(drain_seconds)
