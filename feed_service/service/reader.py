"""Reading a home feed: build it if missing, merge big accounts, hydrate, paginate.

A page costs two Redis round trips on the common path: one script for the entries and the
feed's state (:meth:`FeedManager.read_page`), one pipeline for the posts
(:meth:`PostCache.hydrate`). post_service is asked only when the feed is missing (rebuild) or
the reader has written a post the feed does not hold yet (read-your-own-writes, below).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from common.logging import get_logger
from common.pagination import Cursor as PageCursor
from common.pagination import CursorId, CursorInt, encode_cursor
from common.write_marks import read_mark
from feed_service.repository.redis import RedisClient
from feed_service.service.feed_manager import Cursor, FeedManager, Page, entry_refs
from feed_service.service.post_cache import PostCache

__all__ = ["FeedCursor", "FeedReader", "parse_cursor"]

_log = get_logger("feed_service.reader")


class FeedCursor(PageCursor):
    """After (score, member) of the feed's sorted set: score is the post time in ms; ``n``
    counts the entries the earlier pages showed (a pass stops at the cap; cursors issued
    before it existed count from 0)."""

    s: CursorInt
    m: CursorId
    n: Annotated[int, Field(ge=0, le=2**31)] = 0


def parse_cursor(cursor: FeedCursor | None) -> tuple[Cursor, int] | None:
    return None if cursor is None else ((cursor.s, cursor.m), cursor.n)


class FeedReader:
    def __init__(
        self, feeds: FeedManager, cache: PostCache, write_marks: RedisClient | None = None
    ) -> None:
        self.feeds = feeds
        self.cache = cache
        # post_service's write marks (common.write_marks); None: always ask post_service.
        self.write_marks = write_marks

    async def page(
        self, user_id: str, limit: int, after: tuple[Cursor, int] | None
    ) -> dict[str, Any]:
        cursor, shown = after if after is not None else (None, 0)
        page = await self.feeds.read_page(user_id, limit, cursor, shown)
        if page is None:
            await self.feeds.ensure_feed(user_id)  # the rebuild takes the own posts too
            page = await self.feeds.read_page(user_id, limit, cursor, shown)
        elif cursor is None and (mark := await self._unseen_own_write(user_id, page)) is not None:
            await self.feeds.merge_own_recent(user_id, limit, mark)
            page = await self.feeds.read_page(user_id, limit, cursor, shown)
        if page is None:  # expired again between two calls: nothing to show yet
            page = Page([], False, True, 0)
        hydrated = await self.cache.hydrate(
            entry_refs(page.entries), user_id, likes_tracked=page.likes_tracked
        )
        if hydrated.dropped:
            # Deleted posts found on the way out are pruned, so the next read is clean.
            await self.feeds.remove([user_id], hydrated.dropped)
        next_cursor = None
        if page.more and page.entries:
            member, score = page.entries[-1]
            next_cursor = encode_cursor({"s": score, "m": member, "n": shown + len(page.entries)})
        return {"items": hydrated.posts, "next_cursor": next_cursor}

    async def _unseen_own_write(self, user_id: str, page: Page) -> int | None:
        """The reader's write mark when the feed may lack one of its posts, else ``None``
        (0: no marks to go by, ask post_service as before)."""
        if self.write_marks is None:
            return 0
        try:
            mark = await read_mark(self.write_marks, user_id)
        except Exception as exc:  # unknown: ask post_service, as without marks
            _log.warning("write_mark_unavailable", error=type(exc).__name__)
            return 0
        return mark if mark is not None and mark > page.own_seen_ms else None
