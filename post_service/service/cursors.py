"""Typed keyset positions <-> the opaque cursors of common.pagination."""

from __future__ import annotations

from typing import Any

from common.pagination import Cursor, CursorFloat, CursorId, CursorTime
from post_service.repository.comments import CommentKey
from post_service.repository.likes import LikeKey
from post_service.repository.posts import PostKey, RankKey

__all__ = ["CursorCodec", "RankCursor", "TimeCursor"]


class TimeCursor(Cursor):
    """After (time, id): timelines, tag lists, likes and comments."""

    t: CursorTime
    id: CursorId


class RankCursor(Cursor):
    """After (rank, id): search results."""

    r: CursorFloat
    id: CursorId


class CursorCodec:
    """Cursor payloads carry the exact sort key of the last row shown ("t" time, "r" rank)."""

    @staticmethod
    def post(key: PostKey) -> dict[str, Any]:
        return {"t": key.created_at.isoformat(), "id": key.id}

    @staticmethod
    def parse_post(cursor: TimeCursor | None) -> PostKey | None:
        return None if cursor is None else PostKey(cursor.t, cursor.id)

    @staticmethod
    def rank(key: RankKey) -> dict[str, Any]:
        return {"r": key.rank, "id": key.id}

    @staticmethod
    def parse_rank(cursor: RankCursor | None) -> RankKey | None:
        return None if cursor is None else RankKey(cursor.r, cursor.id)

    @staticmethod
    def comment(key: CommentKey) -> dict[str, Any]:
        return {"t": key.created_at.isoformat(), "id": key.id}

    @staticmethod
    def parse_comment(cursor: TimeCursor | None) -> CommentKey | None:
        return None if cursor is None else CommentKey(cursor.t, cursor.id)

    @staticmethod
    def like(key: LikeKey) -> dict[str, Any]:
        return {"t": key.created_at.isoformat(), "id": key.user_id}

    @staticmethod
    def parse_like(cursor: TimeCursor | None) -> LikeKey | None:
        return None if cursor is None else LikeKey(cursor.t, cursor.id)
