"""Time helpers: every timestamp Murmur stores or sends is UTC with millisecond precision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import PlainSerializer

__all__ = ["Timestamp", "format_timestamp", "from_ms", "to_ms", "utcnow"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def utcnow() -> datetime:
    """Aware UTC now, truncated to milliseconds (what JSON, Redis scores and the DB agree on)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


def _as_utc(dt: datetime) -> datetime:
    # Naive datetimes are taken as UTC: the services never produce local times.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def format_timestamp(dt: datetime) -> str:
    """RFC 3339 UTC with milliseconds and a ``Z`` suffix, e.g. ``2026-11-22T00:13:42.123Z``."""
    utc = _as_utc(dt)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


Timestamp = Annotated[datetime, PlainSerializer(format_timestamp, return_type=str)]


def to_ms(dt: datetime) -> int:
    """Milliseconds since the epoch; exact in a double, so usable as a Redis score."""
    return (_as_utc(dt) - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """Inverse of :func:`to_ms`."""
    return _EPOCH + ms * _MS
