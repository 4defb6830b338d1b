"""Cursor pagination: opaque cursors, the ``Page[T]`` response and the ``PageParams`` dependency."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from common.errors import Unprocessable

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_CURSOR_LENGTH",
    "MAX_LIMIT",
    "Page",
    "PageDep",
    "PageParams",
    "decode_cursor",
    "encode_cursor",
    "make_page",
    "page_params",
]

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Cursors hold a sort key and an id; anything far longer is not one of ours.
MAX_CURSOR_LENGTH = 1024


def encode_cursor(data: dict[str, Any]) -> str:
    """Opaque, URL-safe cursor for ``data`` (a JSON object of sort keys)."""
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _invalid_cursor() -> Unprocessable:
    return Unprocessable(
        "Invalid cursor", errors=[{"loc": ["query", "cursor"], "msg": "Invalid cursor"}]
    )


def decode_cursor(cursor: str) -> dict[str, Any]:
    """Inverse of :func:`encode_cursor`; raises ``Unprocessable`` (422) for anything else."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise _invalid_cursor()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        data = json.loads(raw)
    except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError/JSONDecodeError too
        raise _invalid_cursor() from exc
    if not isinstance(data, dict):
        raise _invalid_cursor()
    return data


class Page(BaseModel, Generic[T]):
    """``{"items": [...], "next_cursor": str | null}``."""

    items: list[T]
    next_cursor: str | None = None


class PageParams:
    """Query parameters of every list endpoint: ``?limit=`` (1..100) and ``?cursor=``."""

    def __init__(self, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> None:
        self.limit = limit
        self.cursor = cursor
        # Decoded eagerly so a garbled cursor fails as 422 before any query runs.
        self.after: dict[str, Any] | None = decode_cursor(cursor) if cursor is not None else None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)] = None,
) -> PageParams:
    """The ``PageParams`` of a request.

    A coroutine rather than ``Depends(PageParams)``: FastAPI calls a class (or any plain
    function) dependency through the thread pool, a thread hop per list request for a few
    attribute assignments.
    """
    return PageParams(limit, cursor)


PageDep = Annotated[PageParams, Depends(page_params)]


def make_page(rows: Sequence[T], limit: int, cursor_for: Callable[[T], dict[str, Any]]) -> Page[T]:
    """Build a page from up to ``limit + 1`` rows fetched in order.

    Fetching one extra row tells whether another page exists without a COUNT; the cursor
    points after the last row shown.
    """
    shown = list(rows[:limit])
    next_cursor = encode_cursor(cursor_for(shown[-1])) if len(rows) > limit and shown else None
    return Page[T](items=shown, next_cursor=next_cursor)
