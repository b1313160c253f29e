"""CORS: off unless origins are configured; an allowed origin is echoed, never ``*`` with
credentials (the settings refuse that combination)."""

from __future__ import annotations

from collections.abc import Iterable

ALLOWED_METHODS = b"GET, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS = b"authorization, content-type, idempotency-key, x-request-id"
EXPOSED_HEADERS = b"x-request-id, retry-after"


class CorsPolicy:
    def __init__(self, origins: Iterable[str], *, allow_credentials: bool, max_age: int) -> None:
        self._origins = frozenset(o.rstrip("/").encode("latin-1") for o in origins)
        self._any = b"*" in self._origins
        if self._any and allow_credentials:
            # Echoing any origin with credentials would let every site act as the user.
            raise ValueError("CORS: '*' cannot be combined with credentials")
        self.enabled = bool(self._origins)
        self._credentials = allow_credentials
        self._max_age = str(max_age).encode()

    def allows(self, origin: bytes) -> bool:
        return self._any or origin in self._origins

    def response_headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """Headers for an actual (non-preflight) answer to ``origin``; none when not allowed."""
        if origin is None or not self.enabled or not self.allows(origin):
            return []
        if self._any:
            return [
                (b"access-control-allow-origin", b"*"),
                (b"access-control-expose-headers", EXPOSED_HEADERS),
            ]
        headers = [
            (b"access-control-allow-origin", origin),
            (b"vary", b"Origin"),
            (b"access-control-expose-headers", EXPOSED_HEADERS),
        ]
        if self._credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    def preflight_headers(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        headers = [
            *self.response_headers(origin),
            (b"access-control-allow-methods", ALLOWED_METHODS),
            (b"access-control-allow-headers", ALLOWED_HEADERS),
            (b"access-control-max-age", self._max_age),
        ]
        if not any(name == b"vary" for name, _ in headers):
            headers.append((b"vary", b"Origin"))
        return headers
