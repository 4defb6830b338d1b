"""Identifiers: UUIDv7 strings, time-ordered so indexes and feeds stay append-friendly."""

from __future__ import annotations

import uuid_utils

__all__ = ["new_id"]


def new_id() -> str:
    """A new UUIDv7 in canonical form (36 chars, lowercase)."""
    return str(uuid_utils.uuid7())
