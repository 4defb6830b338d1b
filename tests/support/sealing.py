"""Sealed fields as auth_service makes them, with the development key the test settings use."""

from __future__ import annotations

from common.sealing import DEVELOPMENT_SEAL_KEY, Sealer

__all__ = ["sealed", "unsealed"]

_SEALER = Sealer(DEVELOPMENT_SEAL_KEY)


def sealed(email: str, token: str) -> str:
    return _SEALER.seal({"email": email, "token": token})


def unsealed(value: str) -> dict[str, str]:
    """The fields of a sealed value (auth's outbox holds only these)."""
    return _SEALER.open(value, max_age_s=3600)
