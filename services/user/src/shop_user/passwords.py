"""argon2id password hashing, off the event loop, with a constant-time failure path."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    """Hashes and verifies passwords; build it with :meth:`create` (it precomputes a hash)."""

    def __init__(self, hasher: PasswordHasher, dummy_hash: str, max_concurrency: int) -> None:
        self._hasher = hasher
        self._dummy_hash = dummy_hash
        # argon2 is CPU- and memory-bound; the semaphore caps the RAM held by hashes in flight.
        self._slots = asyncio.Semaphore(max_concurrency)

    @classmethod
    async def create(
        cls,
        *,
        time_cost: int,
        memory_cost_kib: int,
        parallelism: int,
        max_concurrency: int,
    ) -> Passwords:
        hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost_kib,
            parallelism=parallelism,
            type=Type.ID,
        )
        # Verified instead of a real hash when the email is unknown, so a failed login costs the
        # same either way and its timing does not tell whether the account exists.
        dummy = await asyncio.to_thread(hasher.hash, secrets.token_urlsafe(32))
        return cls(hasher, dummy, max_concurrency)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when ``password`` matches; with no stored hash, spends the same time and fails."""
        async with self._slots:
            if stored_hash is None:
                await asyncio.to_thread(self._check, self._dummy_hash, password)
                return False
            return await asyncio.to_thread(self._check, stored_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)

    def _check(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False
