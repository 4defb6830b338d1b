"""Reading a home feed: build it if missing, merge big accounts, hydrate, paginate."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from common.pagination import Cursor as PageCursor
from common.pagination import CursorId, CursorInt, encode_cursor
from feed_service.service.feed_manager import Cursor, FeedManager, entry_refs
from feed_service.service.post_cache import PostCache

__all__ = ["FeedCursor", "FeedReader", "parse_cursor"]


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
    def __init__(self, feeds: FeedManager, cache: PostCache) -> None:
        self.feeds = feeds
        self.cache = cache

    async def page(
        self, user_id: str, limit: int, after: tuple[Cursor, int] | None
    ) -> dict[str, Any]:
        cursor, shown = after if after is not None else (None, 0)
        rebuilt = await self.feeds.ensure_feed(user_id)
        await self.feeds.touch(user_id)
        if cursor is None and not rebuilt:
            await self.feeds.merge_own_recent(user_id, limit)
        entries, more = await self.feeds.read_entries(user_id, limit, cursor, shown)
        hydrated = await self.cache.hydrate(entry_refs(entries), user_id)
        if hydrated.dropped:
            # Deleted posts found on the way out are pruned, so the next read is clean.
            await self.feeds.remove([user_id], hydrated.dropped)
        next_cursor = None
        if more and entries:
            member, score = entries[-1]
            next_cursor = encode_cursor({"s": score, "m": member, "n": shown + len(entries)})
        return {"items": hydrated.posts, "next_cursor": next_cursor}
