"""The discovery source a service's settings name, started for its lifetime (shopkit.discovery,
shopkit.consul)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from shopkit.consul import consul_discovery
from shopkit.discovery import Discovery, DnsDiscovery, StaticDiscovery
from shopkit.settings import ServiceSettings


@asynccontextmanager
async def discovery_for(
    settings: ServiceSettings, addresses: Mapping[str, str]
) -> AsyncIterator[Discovery]:
    """The source ``settings.discovery`` names, for the peers in ``addresses`` (name -> the
    static addresses, which ``dns`` resolves and ``consul`` ignores), running until exit. With
    ``consul`` this instance is also registered there, and deregistered first thing at exit."""
    caller = settings.service_name
    if settings.discovery == "static":
        yield StaticDiscovery(addresses, caller=caller)
    elif settings.discovery == "dns":
        dns = DnsDiscovery(addresses, refresh_seconds=settings.dns_refresh_seconds, caller=caller)
        await dns.start()
        try:
            yield dns
        finally:
            await dns.close()
    else:
        async with consul_discovery(settings, list(addresses)) as found:
            yield found
