"""Typed keyset positions <-> the opaque cursors of common.pagination."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from common.errors import Unprocessable
from post_service.repository.comments import CommentKey
from post_service.repository.likes import LikeKey
from post_service.repository.posts import PostKey, RankKey

__all__ = ["CursorCodec"]


def _invalid() -> Unprocessable:
    return Unprocessable(
        "Invalid cursor", errors=[{"loc": ["query", "cursor"], "msg": "Invalid cursor"}]
    )


def _time(data: dict[str, Any]) -> datetime:
    value = data.get("t")
    if not isinstance(value, str):
        raise _invalid()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _invalid() from exc
    if parsed.tzinfo is None:
        raise _invalid()
    return parsed


def _id(data: dict[str, Any]) -> str:
    value = data.get("id")
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise _invalid()
    return value


class CursorCodec:
    """Cursor payloads carry the exact sort key of the last row shown ("t" time, "r" rank)."""

    @staticmethod
    def post(key: PostKey) -> dict[str, Any]:
        return {"t": key.created_at.isoformat(), "id": key.id}

    @staticmethod
    def parse_post(data: dict[str, Any] | None) -> PostKey | None:
        return None if data is None else PostKey(_time(data), _id(data))

    @staticmethod
    def rank(key: RankKey) -> dict[str, Any]:
        return {"r": key.rank, "id": key.id}

    @staticmethod
    def parse_rank(data: dict[str, Any] | None) -> RankKey | None:
        if data is None:
            return None
        rank = data.get("r")
        if isinstance(rank, bool) or not isinstance(rank, int | float):
            raise _invalid()
        return RankKey(float(rank), _id(data))

    @staticmethod
    def comment(key: CommentKey) -> dict[str, Any]:
        return {"t": key.created_at.isoformat(), "id": key.id}

    @staticmethod
    def parse_comment(data: dict[str, Any] | None) -> CommentKey | None:
        return None if data is None else CommentKey(_time(data), _id(data))

    @staticmethod
    def like(key: LikeKey) -> dict[str, Any]:
        return {"t": key.created_at.isoformat(), "id": key.user_id}

    @staticmethod
    def parse_like(data: dict[str, Any] | None) -> LikeKey | None:
        return None if data is None else LikeKey(_time(data), _id(data))
