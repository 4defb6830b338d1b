"""The write mark of a new post (common.write_marks), so feed_service can skip asking us."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from common.logging import get_logger
from common.time import to_ms
from common.write_marks import write_mark

__all__ = ["WriteMarks"]

_log = get_logger("post_service.write_marks")


class WriteMarks:
    def __init__(self, redis: Any, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    async def post_created(self, author_id: str, created_at: datetime) -> None:
        """Set after the post's commit. Failing open: without the mark the author's next
        feed page may show the post only once its event is consumed (usually well under a
        second), which is no reason to fail a post that is already stored."""
        try:
            await write_mark(self.redis, author_id, to_ms(created_at), self.ttl_s)
        except Exception as exc:
            _log.warning("write_mark_failed", error=type(exc).__name__)
