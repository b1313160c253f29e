"""Bearer-token checks at the edge, with the kit's verifier and a small cache of good tokens.

The services verify the same token again; the gateway checks it so junk never reaches them and
so rate limits can follow the user. A signature check costs tens of microseconds, so a token
that verified recently is remembered until the earlier of its expiry and a short horizon.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
from shopkit.auth import TokenVerifier
from shopkit.errors import Unauthorized


class KeysUnavailable(Exception):
    """The signing keys cannot be fetched: the gateway cannot tell good tokens from bad."""


class EdgeAuth:
    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        cache_size: int,
        cache_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._clock = clock
        # token -> (subject, valid until as a unix time)
        self._cache: dict[str, tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._cache)

    async def subject(self, authorization: bytes | None) -> str:
        """The token's subject; raises Unauthorized or KeysUnavailable."""
        if authorization is None:
            raise Unauthorized("a bearer token is required")
        scheme, _, raw_token = authorization.decode("latin-1").partition(" ")
        token = raw_token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("a bearer token is required")
        cached = self._cache.get(token)
        if cached is not None:
            if cached[1] > self._clock():
                return cached[0]
            del self._cache[token]
        try:
            principal = await self.verifier.verify(token)
        except Unauthorized:
            if not self.verifier.ready:
                raise KeysUnavailable from None
            raise
        if self._cache_size and self._cache_seconds:
            self._remember(token, principal.user_id)
        return principal.user_id

    def _remember(self, token: str, subject: str) -> None:
        # The signature was just verified; reading exp again without it is safe.
        claims = jwt.decode(token, options={"verify_signature": False})
        expires = claims.get("exp")
        now = self._clock()
        until = now + self._cache_seconds
        if isinstance(expires, int | float):
            until = min(until, float(expires))
        if len(self._cache) >= self._cache_size:
            # Drop the oldest tenth at once: a flood of fresh tokens must not cost O(n) each.
            for key in list(self._cache)[: max(1, self._cache_size // 10)]:
                del self._cache[key]
        self._cache[token] = (subject, until)
