"""Header hygiene in both directions.

Upstream services trust identity and forwarding headers only because the gateway removes every
copy a client sent; the request id and the client address are set here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# RFC 9110 section 7.6.1 plus the de-facto ones; they describe one connection, not the message.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        # uvicorn already answered the client's 100-continue; upstream gets the body at once.
        b"expect",
    }
)
# Identity and forwarding claims only the gateway may make.
SPOOFABLE = frozenset(
    {
        b"x-user-id",
        b"x-user-roles",
        b"x-user-email",
        b"x-internal-token",
        b"forwarded",
        b"x-real-ip",
        b"x-request-id",
        # The upstream's time budget is the gateway's to set (shopkit.deadline).
        b"x-request-budget-ms",
        # Trace context is the gateway's to start (shopkit.tracing.start_gateway_request).
        b"traceparent",
        b"tracestate",
        b"baggage",
    }
)
SPOOFABLE_PREFIXES = (b"x-forwarded-", b"x-user-", b"x-internal-")

# Set by the gateway (or its server) on the way back; the upstream's copies would duplicate them.
RESPONSE_DROP = HOP_BY_HOP | {b"server", b"date", b"x-request-id"}

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
NO_STORE = (b"cache-control", b"no-store")


@dataclass
class IncomingRequest:
    """What the gateway needs from the client's headers, gathered in one pass."""

    forward: list[tuple[str, str]] = field(default_factory=list)
    authorization: bytes | None = None
    content_length: bytes | None = None
    request_id: bytes | None = None
    origin: bytes | None = None
    chunked: bool = False
    # A CORS preflight names the method it asks about.
    preflight: bool = False


def read_request_headers(raw: Iterable[tuple[bytes, bytes]]) -> IncomingRequest:
    """Split the client's headers into the ones to forward and the ones the gateway acts on.

    Header names from the ASGI server are already lower-case.
    """
    incoming = IncomingRequest()
    forward = incoming.forward
    connection_tokens: set[bytes] = set()
    for name, value in raw:
        if name == b"authorization":
            incoming.authorization = value
        elif name == b"content-length":
            incoming.content_length = value
        elif name == b"x-request-id":
            incoming.request_id = value
            continue
        elif name == b"origin":
            incoming.origin = value
        elif name == b"access-control-request-method":
            incoming.preflight = True
        if name in HOP_BY_HOP:
            if name == b"connection":
                connection_tokens.update(t.strip().lower() for t in value.split(b","))
            elif name == b"transfer-encoding":
                incoming.chunked = True
            continue
        if name in SPOOFABLE or name.startswith(SPOOFABLE_PREFIXES):
            continue
        forward.append((name.decode("latin-1"), value.decode("latin-1")))
    connection_tokens -= {b"close", b"keep-alive", b""}
    if connection_tokens:
        # Headers the client declared connection-specific must not travel further either.
        named = {t.decode("latin-1") for t in connection_tokens}
        incoming.forward = [(k, v) for k, v in forward if k not in named]
    return incoming


def response_headers(
    raw: Iterable[tuple[bytes, bytes]], request_id: bytes
) -> list[tuple[bytes, bytes]]:
    """The upstream's headers minus hop-by-hop ones, plus the gateway's own.

    API answers are personal more often than not: unless the service chose a caching policy,
    nothing on the way may store them."""
    headers: list[tuple[bytes, bytes]] = []
    has_cache_control = False
    for name, value in raw:
        lower = name.lower()
        if lower in RESPONSE_DROP:
            continue
        if lower == b"cache-control":
            has_cache_control = True
        headers.append((lower, value))
    headers.extend(SECURITY_HEADERS)
    if not has_cache_control:
        headers.append(NO_STORE)
    headers.append((b"x-request-id", request_id))
    return headers
