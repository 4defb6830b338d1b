"""Notifications: a capped Redis Stream per user.

Stream ids are the notification ids and the SSE event ids, so any replica can resume a stream
from ``Last-Event-ID`` with XREAD. ``notifread`` holds the newest id marked read.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from common.errors import Unprocessable
from common.logging import get_logger
from common.time import format_timestamp, from_ms
from feed_service.repository import keys
from feed_service.repository.redis import RedisClient
from feed_service.service.post_cache import PostCache
from feed_service.settings import FeedSettings

__all__ = [
    "NotificationStore",
    "check_notification_id",
    "parse_stream_id",
    "stream_id_parts",
]

_STREAM_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
# Redis stream ids are two unsigned 64-bit parts. The ends are refused too: no notification
# has id 0-0, and "(0-0" or "(<max>-<max>" (the exclusive ranges paging and counting use)
# make Redis answer an error instead of an empty range.
_MAX_PART = 2**64 - 1
_DEDUPE_TTL_S = 7 * 24 * 3600

_log = get_logger(__name__)

# KEYS: stream, dedupe claim, reference. ARGV: cap, dedupe ttl, then field/value pairs.
# Claim and append together, so a redelivered event never notifies twice; the reference (when
# given) remembers the stream id, so the notification can be taken back.
_NOTIFY_LUA = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return false end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', unpack(fields))
if KEYS[3] ~= KEYS[2] then redis.call('SET', KEYS[3], id, 'EX', ARGV[2]) end
return id
"""

# KEYS: stream, reference. Removes the referenced notification, if it is still there.
_RETRACT_LUA = """
local id = redis.call('GET', KEYS[2])
if not id then return 0 end
redis.call('DEL', KEYS[2])
return redis.call('XDEL', KEYS[1], id)
"""

# KEYS: read pointer. ARGV: ms, seq. Only ever moves forward.
_MARK_READ_LUA = """
local current = redis.call('GET', KEYS[1])
if current then
  local dash = string.find(current, '-')
  local ms = tonumber(string.sub(current, 1, dash - 1))
  local seq = tonumber(string.sub(current, dash + 1))
  local new_ms, new_seq = tonumber(ARGV[1]), tonumber(ARGV[2])
  if new_ms < ms or (new_ms == ms and new_seq <= seq) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '-' .. ARGV[2])
return 1
"""
# KEYS: key. ARGV: value. Deletes the key only if it still holds that value.
_DELETE_IF_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def stream_id_parts(value: str) -> tuple[int, int]:
    """(ms, seq) of a notification id, or ``ValueError`` for anything Redis would refuse."""
    match = _STREAM_ID.fullmatch(value)
    if match is None:
        raise ValueError("not a notification id")
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms > _MAX_PART or seq > _MAX_PART or (ms, seq) in {(0, 0), (_MAX_PART, _MAX_PART)}:
        raise ValueError("not a notification id")
    return ms, seq


def check_notification_id(value: str) -> str:
    """``value`` unchanged if it can be a notification id (a pydantic validator)."""
    stream_id_parts(value)
    return value


def parse_stream_id(value: str, *, loc: list[str]) -> tuple[int, int]:
    """(ms, seq) of a notification id a client sent; 422 at ``loc`` otherwise."""
    try:
        return stream_id_parts(value)
    except ValueError:
        raise Unprocessable(
            f"Invalid {loc[-1]}", errors=[{"loc": loc, "msg": "not a notification id"}]
        ) from None


class NotificationStore:
    def __init__(self, redis: RedisClient, settings: FeedSettings, cache: PostCache) -> None:
        self.redis = redis
        self.settings = settings
        self.cache = cache
        self._notify = redis.register_script(_NOTIFY_LUA)
        self._mark = redis.register_script(_MARK_READ_LUA)
        self._retract = redis.register_script(_RETRACT_LUA)
        self._delete_if = redis.register_script(_DELETE_IF_LUA)

    async def notify(
        self,
        user_id: str,
        kind: str,
        *,
        actor_id: str,
        event_id: str,
        post_id: str | None = None,
        comment_id: str | None = None,
        ref: str | None = None,
    ) -> str | None:
        """Append a notification once per event; returns its id (None when already sent).

        ``ref`` names it for :meth:`retract` (an unlike, a deleted comment).
        """
        if user_id == actor_id:
            return None
        dedupe = keys.notif_dedupe(user_id, event_id)
        result = await self._notify(
            keys=[
                keys.notifications(user_id),
                dedupe,
                keys.notif_ref(user_id, ref) if ref is not None else dedupe,
            ],
            args=[
                self.settings.notification_cap,
                _DEDUPE_TTL_S,
                "type",
                kind,
                "actor_id",
                actor_id,
                "post_id",
                post_id or "",
                "comment_id",
                comment_id or "",
            ],
        )
        return str(result) if result else None

    async def retract(self, user_id: str, ref: str) -> bool:
        """Take back the notification named ``ref``; False when there is none (any more)."""
        removed = await self._retract(
            keys=[keys.notifications(user_id), keys.notif_ref(user_id, ref)], args=[]
        )
        return bool(removed)

    async def _read_pointer(self, user_id: str) -> tuple[int, int]:
        value = await self.redis.get(keys.notif_read(user_id))
        if not value:
            return 0, 0
        try:
            return stream_id_parts(value)
        except ValueError:
            # Written before ids were checked: it would fail every count and, compared as a
            # huge number, block every later mark-read. Dropped (unless a mark-read just
            # replaced it), so it reads as "nothing read yet".
            _log.warning("bad_notification_read_pointer", user_id=user_id)
            await self._delete_if(keys=[keys.notif_read(user_id)], args=[value])
            return 0, 0

    async def _render(
        self, user_id: str, rows: list[tuple[str, dict[str, str]]]
    ) -> list[dict[str, Any]]:
        read_upto = await self._read_pointer(user_id)
        actors = await self.cache.summaries([r["actor_id"] for _id, r in rows])
        result: list[dict[str, Any]] = []
        for stream_id, row in rows:
            ms, seq = stream_id_parts(stream_id)
            actor = actors.get(row["actor_id"]) or {
                "id": row["actor_id"],
                "username": "",
                "display_name": "",
            }
            result.append(
                {
                    "id": stream_id,
                    "type": row["type"],
                    "actor": actor,
                    "post_id": row.get("post_id") or None,
                    "comment_id": row.get("comment_id") or None,
                    "created_at": format_timestamp(from_ms(ms)),
                    "read": (ms, seq) <= read_upto,
                }
            )
        return result

    async def page(
        self, user_id: str, limit: int, before: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        start = "+" if before is None else f"({before}"
        rows = await self.redis.xrevrange(keys.notifications(user_id), start, "-", count=limit + 1)
        return await self._render(user_id, rows[:limit]), len(rows) > limit

    async def unread_count(self, user_id: str) -> int:
        ms, seq = await self._read_pointer(user_id)
        rows = await self.redis.xrange(
            keys.notifications(user_id),
            f"({ms}-{seq}" if (ms, seq) != (0, 0) else "-",
            "+",
            count=self.settings.notification_cap + 1,
        )
        return len(rows)

    async def mark_read(self, user_id: str, up_to_id: str | None) -> None:
        if up_to_id is None:
            newest = await self.redis.xrevrange(keys.notifications(user_id), "+", "-", count=1)
            if not newest:
                return
            up_to_id = newest[0][0]
        ms, seq = parse_stream_id(up_to_id, loc=["body", "up_to_id"])
        await self._mark(keys=[keys.notif_read(user_id)], args=[ms, seq])

    async def latest_id(self, user_id: str) -> str:
        newest = await self.redis.xrevrange(keys.notifications(user_id), "+", "-", count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def follow(self, user_id: str, after: str) -> AsyncIterator[dict[str, Any]]:
        """Notifications after stream id ``after``, forever (blocking XREAD in short slices)."""
        key = keys.notifications(user_id)
        last = after
        while True:
            response = await self.redis.xread(
                {key: last}, count=100, block=self.settings.sse_block_ms
            )
            for _stream, rows in response or []:
                for notification in await self._render(user_id, rows):
                    last = notification["id"]
                    yield notification
