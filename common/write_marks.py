"""Write marks: "this user has just written", so readers can skip asking the writer.

post_service sets a mark after a post's transaction commits: the post's creation time in ms,
under a key of its own Redis, for ``ttl_s``. feed_service reads it on a first page: a feed
that already holds an own post at least that new needs no call to post_service (the common
path), an older one asks post_service for the reader's newest posts (read-your-own-writes,
also while the post.created event is still on its way or RabbitMQ is down). The key layout
lives here only, like an event schema: the mark is the contract, not either store.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_TTL_S", "mark_key", "read_mark", "write_mark"]

DEFAULT_TTL_S = 3600


def mark_key(user_id: str) -> str:
    return "writemark:{u:" + user_id + "}"


# Concurrent writes of one user may finish in any order: the mark only ever moves forward.
_WRITE_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
"""


async def write_mark(redis: Any, user_id: str, created_ms: int, ttl_s: int) -> None:
    """Record ``created_ms`` as the user's newest write (never lowered, TTL renewed)."""
    await redis.eval(_WRITE_LUA, 1, mark_key(user_id), created_ms, ttl_s)


async def read_mark(redis: Any, user_id: str) -> int | None:
    """The user's newest write in ms, or ``None`` when none is marked (or it expired)."""
    value = await redis.get(mark_key(user_id))
    return None if value is None else int(value)
