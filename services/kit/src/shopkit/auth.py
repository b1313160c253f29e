"""Bearer-token verification that every service does for itself (not only the gateway).

The user service signs EdDSA (Ed25519) tokens and publishes the public keys as a JWKS; everyone
else fetches that set, caches it, and refetches when a token names a key id it has not seen (key
rotation) — at most once per ``refetch_interval`` so forged kids cannot turn into a request storm.
A fetch that failed (the user service still starting, say) is tried again after
``retry_interval`` instead, so one early failure does not lock tokens out for the whole interval.
Calls between services on internal routes carry a shared internal token instead.

The time claims (``iat``, ``nbf``, ``exp``) are checked here, on the service's own clock
(:mod:`shopkit.clock`), with a leeway for clock skew between the issuer and the verifier.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import Depends, Request

from shopkit import clock
from shopkit.discovery import Discovery
from shopkit.errors import Forbidden, Unauthorized
from shopkit.http import INTERNAL_TOKEN_HEADER

ALGORITHM = "EdDSA"
JWKS_PATH = "/.well-known/jwks.json"

JwksFetcher = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class TokenVerifier:
    def __init__(
        self,
        fetch_jwks: JwksFetcher,
        *,
        issuer: str,
        audience: str,
        leeway: int = 360,
        refetch_interval: float = 30.0,
        retry_interval: float = 1.0,
        now: Callable[[], float] = clock.now,
    ) -> None:
        self._fetch = fetch_jwks
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._now = now
        self._refetch_interval = refetch_interval
        self._retry_interval = retry_interval
        self._keys: dict[str, Any] = {}
        self._next_fetch = float("-inf")  # time.monotonic() before which no fetch is made
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return bool(self._keys)

    async def refresh(self, *, force: bool = False) -> None:
        async with self._lock:
            started = time.monotonic()
            if not force and started < self._next_fetch:
                return
            self._next_fetch = started + self._retry_interval
            jwks = await self._fetch()
            keys = {}
            for entry in jwks.get("keys", []):
                key = jwt.PyJWK.from_dict(entry)
                if key.key_id:
                    keys[key.key_id] = key.key
            if keys:
                self._keys = keys
                self._next_fetch = started + self._refetch_interval

    async def check(self) -> None:
        """Readiness: the signing keys are loaded (fetched now if they are not yet)."""
        if not self.ready:
            await self.refresh(force=True)
        if not self.ready:
            raise LookupError("no signing keys yet")

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("malformed token") from exc
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise Unauthorized("token is not signed with an accepted algorithm")
        if kid not in self._keys:
            try:
                await self.refresh()
            except Exception as exc:
                raise Unauthorized("signing keys are not available") from exc
        key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("token is signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": ["exp", "iat", "sub", "iss", "aud"],
                    # Checked below on the service's clock, which PyJWT does not know.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("token is not valid") from exc
        self._check_times(claims)
        roles = claims.get("roles", [])
        email = claims.get("email", "")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthorized("token is not valid")
        return Principal(user_id=str(claims["sub"]), email=str(email), roles=tuple(roles))

    def _check_times(self, claims: dict[str, Any]) -> None:
        """exp in the past, or iat/nbf in the future, by more than the leeway: refused. Within
        the leeway either clock may be the wrong one, so the token is given the benefit."""
        times: dict[str, int | float] = {}
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if value is None and name == "nbf":
                continue
            # JSON as Python reads it admits NaN and Infinity: neither is a time. Integers are
            # compared as they are (a huge one must not overflow a float conversion).
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (isinstance(value, float) and not math.isfinite(value))
            ):
                raise Unauthorized("token is not valid")
            times[name] = value
        now = self._now()
        if times["exp"] <= now - self._leeway:
            raise Unauthorized("token has expired")
        if max(times["iat"], times.get("nbf", times["iat"])) > now + self._leeway:
            raise Unauthorized("token is not valid yet")


def remote_jwks(
    session: aiohttp.ClientSession, discovery: Discovery, *, timeout: float
) -> JwksFetcher:
    """Fetches the user service's published keys (wherever discovery says it lives)."""
    budget = aiohttp.ClientTimeout(total=timeout)

    async def fetch() -> dict[str, Any]:
        base = await discovery.resolve("user")
        async with session.get(base + JWKS_PATH, timeout=budget) as resp:
            resp.raise_for_status()
            body = await resp.json(content_type=None)
        if not isinstance(body, dict):
            raise ValueError("JWKS is not an object")
        return body

    return fetch


def public_jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    """The JWKS entry (RFC 8037, OKP) that lets peers verify tokens signed with ``key``."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": ALGORITHM, "use": "sig"}


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer token is required")
    return token.strip()


async def require_user(request: Request) -> Principal:
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(bearer_token(request))


async def require_admin(principal: Annotated[Principal, Depends(require_user)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this operation needs the admin role")
    return principal


def require_internal(request: Request) -> None:
    """Internal routes are for peers holding the internal token, never for end users."""
    expected: str = request.app.state.internal_token
    given = request.headers.get(INTERNAL_TOKEN_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("internal route: the internal token is required")


CurrentUser = Annotated[Principal, Depends(require_user)]
AdminUser = Annotated[Principal, Depends(require_admin)]
Internal = Depends(require_internal)
