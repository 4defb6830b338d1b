"""Sealed event fields: a one-time token and the address it is mailed to, readable only by
the service holding the key (auth seals, email_service opens).

Verification and reset events pass through auth's outbox (kept a day after publishing),
RabbitMQ and its dead-letter queues; sealed, every one of those copies is ciphertext, and once
``max_age_s`` has passed (the token's own lifetime) not even the key opens it. Fernet
(AES-128-CBC with HMAC-SHA256, timestamped) from ``cryptography``; several comma-separated
keys allow rotation: the first seals, any opens.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

__all__ = ["DEVELOPMENT_SEAL_KEY", "SealError", "Sealer", "is_development_key", "sealer"]

# base64url of "murmur-development-only-seal-key"; production settings refuse it.
DEVELOPMENT_SEAL_KEY = "bXVybXVyLWRldmVsb3BtZW50LW9ubHktc2VhbC1rZXk="


class SealError(ValueError):
    """Not sealed with any of our keys, tampered with, or older than allowed."""


class Sealer:
    def __init__(self, keys: str) -> None:
        parsed = [k.strip() for k in keys.split(",") if k.strip()]
        if not parsed:
            raise ValueError("no sealing key")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in parsed])
        except ValueError:
            raise ValueError("a sealing key is not a Fernet key (32 bytes, base64url)") from None

    def seal(self, fields: Mapping[str, str]) -> str:
        return self._fernet.encrypt(json.dumps(dict(fields)).encode()).decode("ascii")

    def open(self, sealed: str, *, max_age_s: int) -> dict[str, str]:
        try:
            plain = self._fernet.decrypt(sealed.encode("ascii"), ttl=max_age_s)
            fields = json.loads(plain)
        except (InvalidToken, UnicodeError, ValueError):
            raise SealError("cannot open sealed fields") from None
        if not isinstance(fields, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in fields.items()
        ):
            raise SealError("sealed fields are not a string map")
        return fields


@functools.lru_cache(maxsize=4)
def _cached(keys: str) -> Sealer:
    return Sealer(keys)


def sealer(keys: SecretStr) -> Sealer:
    """The sealer for a settings value (parsed once)."""
    return _cached(keys.get_secret_value())


def is_development_key(keys: SecretStr) -> bool:
    return DEVELOPMENT_SEAL_KEY in keys.get_secret_value()
