"""Where peers live. Three sources behind one interface, chosen by the ``discovery`` setting, so
a service switches between them without a code change:

- ``static``: addresses from settings (the local default, ``make up``);
- ``dns``: the host names in those addresses resolved by the service itself, again and again
  (Kubernetes DNS: a Service's name, or every pod of a headless one);
- ``consul``: the instances Consul's health API reports passing (:mod:`shopkit.consul`).

A service may run as several instances. Calls are spread round-robin, and an instance a caller
could not even connect to (stopped, restarting, draining after SIGTERM) is passed over for a few
seconds, so new requests go to the others; so is one whose answers keep failing. A source that
stops answering (DNS, Consul) leaves the last set it gave in use: a registry outage is not an
outage of the shop (RELIABILITY.md R16).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

from shopkit.observability import DISCOVERY_INSTANCES, DISCOVERY_REFRESH_FAILURES

log = logging.getLogger("shopkit.discovery")


class UnknownService(LookupError):
    """No instance of the service is known: not configured, or none healthy yet."""


class Discovery(Protocol):
    async def resolve(self, service: str, *, avoid: Collection[str] = ()) -> str:
        """Base URL (scheme, host and port, no trailing slash) of one instance of ``service``;
        one not in ``avoid`` (those a caller just failed to reach) while there is one."""
        ...

    def instance_count(self, service: str) -> int:
        """How many instances ``service`` has (0 when unknown)."""
        ...

    def unreachable(self, service: str, url: str) -> None:
        """A caller could not connect to ``url``: prefer the other instances for a while."""
        ...

    def answered(self, service: str, url: str, *, ok: bool) -> None:
        """How a call to ``url`` ended: an instance that keeps failing is passed over a while."""
        ...


# An instance whose answers fail this many times in a row (a 5xx other than 503, a timeout, a
# dropped connection) is passed over for OUTLIER_SECONDS, like an outlier: it may pass its
# health checks and still be broken. 503 is left out: the services answer it on purpose when a
# dependency of theirs is down or they shed load, which says nothing about the instance.
FAILURES_TO_EJECT = 5
OUTLIER_SECONDS = 10.0


def split_addresses(value: str) -> tuple[str, ...]:
    """``"http://a:1, http://b:2/"`` -> ``("http://a:1", "http://b:2")``."""
    return tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())


def base_url(scheme: str, host: str, port: int) -> str:
    """``http://10.0.0.7:8101``; an IPv6 address in brackets."""
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class Pool:
    """The instances of one service: taken in turn, an unreachable one passed over a while."""

    def __init__(self, urls: Iterable[str] = (), *, eject_seconds: float = 2.0) -> None:
        self.urls: tuple[str, ...] = tuple(urls)
        self._turns = itertools.count()
        self._eject_seconds = eject_seconds
        self._ejected: dict[str, float] = {}
        self._failures: dict[str, int] = {}

    def replace(self, urls: Iterable[str]) -> None:
        self.urls = tuple(urls)
        # An instance that left and came back starts with a clean slate.
        self._ejected = {url: t for url, t in self._ejected.items() if url in self.urls}
        self._failures = {url: n for url, n in self._failures.items() if url in self.urls}

    def pick(self, avoid: Collection[str] = ()) -> str | None:
        urls = self.urls
        if not urls:
            return None
        now = time.monotonic()
        turn = next(self._turns) % len(urls)
        picks = urls[turn:] + urls[:turn]  # round-robin: each call starts one further on
        fresh = [url for url in picks if url not in avoid]
        healthy = [url for url in fresh if self._ejected.get(url, 0.0) <= now]
        # An instance that failed a while ago may be back: better than one that just failed.
        return (healthy or fresh or picks)[0]

    def eject(self, url: str) -> None:
        if url in self.urls:
            self._ejected[url] = time.monotonic() + self._eject_seconds

    def answered(self, url: str, *, ok: bool) -> bool:
        """Counts failed answers in a row; True when this one got the instance ejected."""
        if url not in self.urls:
            return False
        if ok:
            self._failures.pop(url, None)
            return False
        count = self._failures.get(url, 0) + 1
        if count < FAILURES_TO_EJECT:
            self._failures[url] = count
            return False
        del self._failures[url]
        self._ejected[url] = time.monotonic() + OUTLIER_SECONDS
        return True


class Pools:
    """What every source shares: a pool per service, and the interface callers use."""

    def __init__(self, caller: str, *, eject_seconds: float) -> None:
        self._caller = caller
        self._eject_seconds = eject_seconds
        self._pools: dict[str, Pool] = {}

    def _set(self, service: str, urls: Iterable[str]) -> None:
        urls = dict.fromkeys(urls)  # one instance listed twice is still one instance
        pool = self._pools.get(service)
        if pool is None:
            pool = self._pools[service] = Pool(urls, eject_seconds=self._eject_seconds)
            # At 0 from the start: a rate over zeros is 0, a rate over no series is no data.
            DISCOVERY_REFRESH_FAILURES.labels(self._caller, service)
        else:
            pool.replace(urls)
        DISCOVERY_INSTANCES.labels(self._caller, service).set(len(pool.urls))

    def _refresh_failed(self, service: str) -> None:
        DISCOVERY_REFRESH_FAILURES.labels(self._caller, service).inc()

    async def resolve(self, service: str, *, avoid: Collection[str] = ()) -> str:
        pool = self._pools.get(service)
        url = pool.pick(avoid) if pool is not None else None
        if url is None:
            raise UnknownService(service)
        return url

    def instance_count(self, service: str) -> int:
        pool = self._pools.get(service)
        return len(pool.urls) if pool is not None else 0

    def unreachable(self, service: str, url: str) -> None:
        pool = self._pools.get(service)
        if pool is not None:
            pool.eject(url)

    def answered(self, service: str, url: str, *, ok: bool) -> None:
        pool = self._pools.get(service)
        if pool is not None and pool.answered(url, ok=ok):
            log.warning(
                "%s at %s failed %d times in a row: passed over for %.0fs",
                service,
                url,
                FAILURES_TO_EJECT,
                OUTLIER_SECONDS,
            )


class StaticDiscovery(Pools):
    """Fixed addresses, several instances comma-separated: ``{"cart": "http://a:1,http://b:2"}``."""

    def __init__(
        self, addresses: Mapping[str, str], *, eject_seconds: float = 2.0, caller: str = ""
    ) -> None:
        super().__init__(caller, eject_seconds=eject_seconds)
        for name, value in addresses.items():
            if value and (urls := split_addresses(value)):
                self._set(name, urls)


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` has, in the order the resolver gave them, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class DnsDiscovery(Pools):
    """The host names of the configured addresses, resolved here every ``refresh_seconds``.

    On Kubernetes a Service's name gives its cluster IP, and a headless Service's name every
    ready pod, which calls are then spread over. A lookup that fails keeps the last answer; a
    name never resolved yet is used as it is, for the HTTP client to resolve."""

    def __init__(
        self,
        addresses: Mapping[str, str],
        *,
        refresh_seconds: float = 5.0,
        eject_seconds: float = 2.0,
        caller: str = "",
        resolver: Resolver = resolve_host,
        lookup_timeout: float = 2.0,
    ) -> None:
        super().__init__(caller, eject_seconds=eject_seconds)
        self._names: dict[str, tuple[str, ...]] = {}
        for name, value in addresses.items():
            if value and (urls := split_addresses(value)):
                self._names[name] = urls
                self._set(name, urls)
        self._refresh_seconds = refresh_seconds
        self._resolver = resolver
        self._lookup_timeout = lookup_timeout
        self._known: dict[tuple[str, str], list[str]] = {}
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Looks every name up at once, each bounded, so a DNS that does not answer delays
        start-up by one lookup timeout, not by one per peer."""
        pairs = [(service, url) for service, urls in self._names.items() for url in urls]
        answers = await asyncio.gather(*(self._lookup(url) for _, url in pairs))
        found: dict[str, list[str]] = {service: [] for service in self._names}
        failed: set[str] = set()
        for (service, url), answer in zip(pairs, answers, strict=True):
            if answer is None:
                failed.add(service)
            else:
                self._known[service, url] = answer
            found[service].extend(self._known.get((service, url), [url]))
        for service, urls in found.items():
            if service in failed:
                self._refresh_failed(service)
            self._set(service, urls)

    async def _lookup(self, url: str) -> list[str] | None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return [url]  # an address already: nothing to look up
        if parts.scheme == "https":
            # The certificate names the host: the name stays in the URL.
            return [url]
        port = parts.port or 80
        try:
            hosts = await asyncio.wait_for(self._resolver(host, port), self._lookup_timeout)
        except (OSError, UnicodeError, TimeoutError) as exc:
            log.warning("could not resolve %s (keeping the last answer): %r", host, exc)
            return None
        if not hosts:
            return None
        return [base_url(parts.scheme, address, port) for address in hosts]

    async def _run(self) -> None:
        while True:
            # Jittered, so replicas started together do not query DNS in step.
            await asyncio.sleep(self._refresh_seconds * random.uniform(0.8, 1.2))
            await self.refresh()

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="dns-discovery")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
