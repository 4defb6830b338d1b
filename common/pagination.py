"""Cursor pagination: opaque cursors, the ``Page[T]`` response and the ``PageParams`` dependency."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from common.errors import Unprocessable
from common.text import check_storable

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_CURSOR_LENGTH",
    "MAX_LIMIT",
    "Cursor",
    "CursorFloat",
    "CursorId",
    "CursorInt",
    "CursorTime",
    "Page",
    "PageDep",
    "PageParams",
    "decode_cursor",
    "encode_cursor",
    "invalid_cursor",
    "make_keyed_page",
    "make_page",
    "page_params",
]

T = TypeVar("T")
K = TypeVar("K")
R = TypeVar("R")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Cursors hold a sort key and an id; anything far longer is not one of ours.
MAX_CURSOR_LENGTH = 1024


def encode_cursor(data: dict[str, Any]) -> str:
    """Opaque, URL-safe cursor for ``data`` (a JSON object of sort keys)."""
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def invalid_cursor() -> Unprocessable:
    """The one problem every list answers for a cursor it did not make."""
    return Unprocessable(
        "Invalid cursor", errors=[{"loc": ["query", "cursor"], "msg": "Invalid cursor"}]
    )


class Cursor(BaseModel):
    """Base of each list's cursor payload; subclasses name the sort keys with the types below.

    Cursors are opaque to clients but not signed, so anything in one may be forged. Strict
    validation refuses a bool for an int or a number for a string, and the field types bound
    each value to what the stores take: a 64-bit int (Neo4j, Redis), a finite float, a time
    both Python and PostgreSQL hold, an id PostgreSQL can compare (no NUL, no surrogate).
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


_INT64 = 2**63
_MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def _bounded_time(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)  # 0001-01-01T00:00+01:00 has no UTC datetime
    except OverflowError:
        raise ValueError("time out of range") from None
    if utc < _MIN_TIME:
        raise ValueError("time out of range")
    return utc


CursorInt = Annotated[int, Field(ge=-_INT64, le=_INT64 - 1)]
CursorFloat = Annotated[float, Field(allow_inf_nan=False)]
CursorTime = Annotated[AwareDatetime, AfterValidator(_bounded_time)]
CursorId = Annotated[
    str, StringConstraints(min_length=1, max_length=256), AfterValidator(check_storable)
]

C = TypeVar("C", bound=Cursor)


def _cursor_json(cursor: str) -> bytes:
    """The JSON object inside a cursor; ``Unprocessable`` (422) for anything else."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise invalid_cursor()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        data = json.loads(raw)
    except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError/JSONDecodeError too
        raise invalid_cursor() from exc
    if not isinstance(data, dict):
        raise invalid_cursor()
    return raw


def decode_cursor(cursor: str, model: type[C]) -> C:
    """Inverse of :func:`encode_cursor`, validated as ``model``; 422 for anything else."""
    return _validate(_cursor_json(cursor), model)


def _validate(raw: bytes, model: type[C]) -> C:
    try:
        # JSON mode: strict still reads RFC 3339 strings as datetimes.
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_cursor() from exc


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
        self._json = _cursor_json(cursor) if cursor is not None else None

    def after(self, model: type[C]) -> C | None:
        """The position the cursor points after, as this list's ``model``; None on page one."""
        return None if self._json is None else _validate(self._json, model)


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
    return Page[T](items=list(rows[:limit]), next_cursor=_next_cursor(rows, limit, cursor_for))


def make_keyed_page(
    rows: Sequence[tuple[K, T]], limit: int, cursor_for: Callable[[K], dict[str, Any]]
) -> Page[T]:
    """:func:`make_page` for ``(sort key, item)`` rows: the cursor is made from the key of the
    last row shown (a rank or a like's time the item does not carry), the page shows items."""
    return Page[T](
        items=[item for _, item in rows[:limit]],
        next_cursor=_next_cursor(rows, limit, lambda row: cursor_for(row[0])),
    )


def _next_cursor(
    rows: Sequence[R], limit: int, cursor_for: Callable[[R], dict[str, Any]]
) -> str | None:
    """The cursor after the last of ``limit`` rows shown, if the fetch found one more."""
    return encode_cursor(cursor_for(rows[limit - 1])) if 0 < limit < len(rows) else None
