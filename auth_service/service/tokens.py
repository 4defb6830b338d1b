"""Opaque tokens (refresh, verification, reset): random, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["hash_token", "new_opaque_token"]


def new_opaque_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    # A fast hash is enough: the tokens carry 256 random bits, nothing to brute-force.
    return hashlib.sha256(token.encode()).digest()
