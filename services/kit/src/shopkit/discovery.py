"""Where peers live. Static addresses are the local default; Consul and Kubernetes DNS implement
the same interface later, so clients never know which one is in use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class UnknownService(LookupError):
    pass


class Discovery(Protocol):
    async def resolve(self, service: str) -> str:
        """Base URL (scheme, host and port, no trailing slash) of one instance of ``service``."""
        ...


class StaticDiscovery:
    def __init__(self, addresses: Mapping[str, str]) -> None:
        self._addresses = {name: url.rstrip("/") for name, url in addresses.items() if url}

    async def resolve(self, service: str) -> str:
        try:
            return self._addresses[service]
        except KeyError:
            raise UnknownService(service) from None
