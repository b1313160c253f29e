"""Where peers live. Static addresses are the local default; Consul and Kubernetes DNS implement
the same interface later, so clients never know which one is in use.

A service may run as several instances: a static address can list them, comma-separated. Calls
are spread round-robin, and an instance a caller could not even connect to (stopped, restarting,
draining after SIGTERM) is passed over for a few seconds, so new requests go to the others."""

from __future__ import annotations

import itertools
import time
from collections.abc import Collection, Mapping
from typing import Protocol


class UnknownService(LookupError):
    pass


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


def split_addresses(value: str) -> tuple[str, ...]:
    """``"http://a:1, http://b:2/"`` -> ``("http://a:1", "http://b:2")``."""
    return tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())


class StaticDiscovery:
    def __init__(self, addresses: Mapping[str, str], *, eject_seconds: float = 2.0) -> None:
        self._instances = {
            name: urls
            for name, value in addresses.items()
            if value and (urls := split_addresses(value))
        }
        self._turns = {name: itertools.count() for name in self._instances}
        self._eject_seconds = eject_seconds
        self._ejected: dict[str, float] = {}

    async def resolve(self, service: str, *, avoid: Collection[str] = ()) -> str:
        try:
            urls = self._instances[service]
        except KeyError:
            raise UnknownService(service) from None
        now = time.monotonic()
        turn = next(self._turns[service]) % len(urls)
        picks = urls[turn:] + urls[:turn]  # round-robin: each call starts one further on
        fresh = [url for url in picks if url not in avoid]
        healthy = [url for url in fresh if self._ejected.get(url, 0.0) <= now]
        # An instance that failed a while ago may be back: better than one that just failed.
        return (healthy or fresh or picks)[0]

    def instance_count(self, service: str) -> int:
        return len(self._instances.get(service, ()))

    def unreachable(self, service: str, url: str) -> None:
        if url in self._instances.get(service, ()):
            self._ejected[url] = time.monotonic() + self._eject_seconds
