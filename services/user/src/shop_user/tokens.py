"""Access tokens: the Ed25519 signing key, the JWKS that publishes it, and token minting."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from shopkit import clock
from shopkit.auth import ALGORITHM, public_jwk

from shop_user.settings import UserSettings

log = logging.getLogger("shop_user.tokens")


class SigningKeyError(RuntimeError):
    """The configured signing key cannot be used; the service refuses to start."""


def key_id(key: Ed25519PrivateKey) -> str:
    """A fingerprint of the public key: stable across restarts, changes when the key does."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def parse_private_key(pem: bytes, source: str) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{source}: not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{source}: the signing key must be Ed25519")
    return key


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def load_signing_key(settings: UserSettings) -> Ed25519PrivateKey:
    if settings.signing_key is not None:
        pem = settings.signing_key.get_secret_value().encode()
        return parse_private_key(pem, "signing_key")
    if settings.signing_key_path is not None:
        try:
            pem = settings.signing_key_path.read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"signing_key_path: cannot read {exc.filename}") from exc
        return parse_private_key(pem, str(settings.signing_key_path))
    if settings.environment != "development":
        # Settings validation refuses this already; a second guard costs nothing.
        raise SigningKeyError("a signing key is required outside development")
    return development_key(settings.development_key_path)


def development_key(path: Path) -> Ed25519PrivateKey:
    """The key kept under the data directory, created on first start so tokens survive restarts.

    Written to a private temporary file and hard-linked into place: linking fails if the file
    already exists, so two instances starting together agree on one key and neither ever reads
    a half-written file.
    """
    if path.exists():
        return parse_private_key(path.read_bytes(), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(private_key_pem(key))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return parse_private_key(path.read_bytes(), str(path))
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    log.warning("generated a development signing key at %s", path)
    return key


class TokenSigner:
    def __init__(
        self, key: Ed25519PrivateKey, *, issuer: str, audience: str, ttl_seconds: int
    ) -> None:
        self._key = key
        self.kid = key_id(key)
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self._jwks = {"keys": [public_jwk(key, self.kid)]}

    @classmethod
    def from_settings(cls, settings: UserSettings) -> TokenSigner:
        return cls(
            load_signing_key(settings),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=settings.access_token_ttl_seconds,
        )

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(k) for k in self._jwks["keys"]]}

    def issue(self, *, user_id: str, email: str, roles: list[str]) -> str:
        # The service's clock, so a fault test can shift it (R17); verifiers allow for the skew.
        now = int(clock.now())
        claims = {
            "sub": user_id,
            "email": email,
            "roles": roles,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})
