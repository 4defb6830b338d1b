"""Password hashing with bcrypt, always off the event loop."""

from __future__ import annotations

import asyncio

import bcrypt

__all__ = ["PasswordHasher"]


class PasswordHasher:
    def __init__(self, rounds: int) -> None:
        self._rounds = rounds
        # Verified when the account does not exist, so a failed login costs the same either way.
        self._dummy_hash = bcrypt.hashpw(b"murmur-no-such-account", bcrypt.gensalt(rounds))

    async def hash(self, password: str) -> str:
        def _hash() -> bytes:
            return bcrypt.hashpw(password.encode(), bcrypt.gensalt(self._rounds))

        return (await asyncio.to_thread(_hash)).decode()

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Constant work whether or not there is a stored hash; False for no hash."""
        stored = password_hash.encode() if password_hash is not None else self._dummy_hash
        encoded = password.encode()
        if len(encoded) > 72:
            # bcrypt 5 refuses these; hash the dummy to keep timing flat, then fail.
            encoded = encoded[:72]
            stored = self._dummy_hash
            password_hash = None
        matches = await asyncio.to_thread(bcrypt.checkpw, encoded, stored)
        return matches and password_hash is not None
