"""Post cache and user replica (kept by events) and feed hydration.

Feed entries are ids; bodies come from ``post:{p:<id>}`` hashes written by post.created and
kept current by post.updated/liked/unliked and comment events. A miss falls back to
post_service's batch API, whose answer is cached briefly as a ``fallback`` copy: events never
count into it (its counts are post_service's, which may already include them) and post.created
replaces it, so no like or comment is ever counted twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from common.errors import ServiceUnavailable
from common.events import PostCreated
from common.logging import get_logger
from common.time import format_timestamp, from_ms, to_ms
from feed_service.repository import keys
from feed_service.repository.redis import RedisClient
from feed_service.repository.sources import PostSource
from feed_service.settings import FeedSettings

__all__ = ["Hydrated", "PostCache"]

_log = get_logger("feed_service.posts")

# KEYS: post hash, pending-edit hash. ARGV: content, edited_ms, ttl.
# The newest edit is also kept aside (same slot) even when the post is not cached yet:
# deliveries run concurrently, so an edit handled before (or while) post.created must still
# win over the original content. Only an edit newer than the one held applies (ties: the
# same edit redelivered), so redelivered or reordered edits converge on the newest.
_UPDATE_LUA = """
local edited = tonumber(ARGV[2])
local pending = tonumber(redis.call('HGET', KEYS[2], 'edited_at') or '0') or 0
if edited >= pending then
  redis.call('HSET', KEYS[2], 'content', ARGV[1], 'edited_at', ARGV[2])
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], 'edited_at') or '0') or 0
if edited < current then return 0 end
redis.call('HSET', KEYS[1], 'content', ARGV[1], 'edited_at', ARGV[2])
return 1
"""

# Lua lines, shared by _CREATE_LUA and _FILL_LUA: the edit held aside in the ``{pending}``
# hash goes onto the post hash KEYS[1] when newer than the content it holds.
_APPLY_PENDING_EDIT_LUA = """
local edit = redis.call('HMGET', {pending}, 'content', 'edited_at')
if edit[1] and edit[2] then
  local current = tonumber(redis.call('HGET', KEYS[1], 'edited_at') or '0') or 0
  if tonumber(edit[2]) > current then
    redis.call('HSET', KEYS[1], 'content', edit[1], 'edited_at', edit[2])
  end
end
"""

# KEYS: post hash, likes seen-set, comments seen-set, pending-edit hash.
# ARGV: ttl, field/value pairs.
# Counters are counted once: either in the seen-sets (event-kept copy) or in post_service's
# answer (fallback copy, field ``fallback``), never in both.
# Creates the hash only if absent (an edit or like may already have landed on a cached copy),
# atomically with its counts taken from the seen-sets: deliveries run concurrently, so a like
# or comment handled before (or while) post.created is counted, and a redelivered
# post.created can never reset counts already applied. An edit that was handled first is
# applied on top, unless the cached copy already holds one at least as new.
_CREATE_LUA = (
    """
if redis.call('HGET', KEYS[1], 'fallback') == '1' then
  -- A short-lived copy from post_service's batch API, taken while this event was on its way:
  -- the event-kept copy replaces it (its counts come from the seen-sets, exact), rather than
  -- the fallback copy's counts being kept for the event copy's whole TTL.
  redis.call('DEL', KEYS[1])
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  local fields = {}
  for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], 'like_count', redis.call('SCARD', KEYS[2]),
    'comment_count', redis.call('SCARD', KEYS[3]), unpack(fields))
end
"""
    + _APPLY_PENDING_EDIT_LUA.format(pending="KEYS[4]")
    + """
redis.call('EXPIRE', KEYS[1], ARGV[1])
"""
)

# KEYS: post hash, seen-set. ARGV: member, delta (1/-1), counter field, ttl.
# The seen-set makes counting idempotent: a redelivered like changes nothing.
_COUNT_LUA = """
local changed
if ARGV[2] == '1' then
  changed = redis.call('SADD', KEYS[2], ARGV[1])
else
  changed = redis.call('SREM', KEYS[2], ARGV[1])
end
-- A fallback copy already holds post_service's count, which may include this very event:
-- it is left as it is and expires soon; only the event-kept copy is counted into.
if changed == 1 and redis.call('EXISTS', KEYS[1]) == 1
    and redis.call('HGET', KEYS[1], 'fallback') ~= '1' then
  local value = redis.call('HINCRBY', KEYS[1], ARGV[3], tonumber(ARGV[2]))
  if value < 0 then redis.call('HSET', KEYS[1], ARGV[3], 0) end
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
return changed
"""

# KEYS: post hash, pending-edit hash. ARGV: ttl, edited_ms, field/value pairs.
# A copy from post_service's batch API, kept ``ttl`` seconds and marked ``fallback``. It never
# replaces an event-kept copy (whose counts and content events keep current), and never puts
# back content older than an edit already applied or held aside: the batch answer may have
# been read before an edit whose event was handled while it was on its way. Returns the
# content and edited_at the cache holds afterwards (what a read must show).
_FILL_LUA = (
    """
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HGET', KEYS[1], 'fallback') ~= '1' then
  return redis.call('HMGET', KEYS[1], 'content', 'edited_at')
end
local before = redis.call('HMGET', KEYS[1], 'content', 'edited_at')
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], 'fallback', '1', unpack(fields))
local fetched = tonumber(ARGV[2]) or 0
if before[1] and (tonumber(before[2]) or 0) > fetched then
  redis.call('HSET', KEYS[1], 'content', before[1], 'edited_at', before[2])
end
"""
    + _APPLY_PENDING_EDIT_LUA.format(pending="KEYS[2]")
    + """
redis.call('EXPIRE', KEYS[1], ARGV[1])
return redis.call('HMGET', KEYS[1], 'content', 'edited_at')
"""
)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _iso_ms(value: str | None) -> int | None:
    if not value:
        return None
    return to_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))


def _summary(user_id: str, row: Mapping[str, str]) -> dict[str, str]:
    return {"id": user_id, "username": row["username"], "display_name": row["display_name"]}


class Hydrated:
    """Posts in feed order, plus the entries found deleted (to prune from the feed)."""

    def __init__(self, posts: list[dict[str, Any]], dropped: list[str]) -> None:
        self.posts = posts
        self.dropped = dropped


class PostCache:
    def __init__(self, redis: RedisClient, settings: FeedSettings, source: PostSource) -> None:
        self.redis = redis
        self.settings = settings
        self.source = source
        self._create = redis.register_script(_CREATE_LUA)
        self._update = redis.register_script(_UPDATE_LUA)
        self._count = redis.register_script(_COUNT_LUA)
        self._fill_one = redis.register_script(_FILL_LUA)

    # ------------------------------------------------------------------ posts
    async def is_tombstoned(self, post_id: str) -> bool:
        return bool(await self.redis.exists(keys.tombstone(post_id)))

    async def store_created(self, event: PostCreated) -> None:
        fields: dict[str, float | int | str] = {
            "author_id": event.author_id,
            "content": event.content,
            "created_at": to_ms(event.created_at),
            "edited_at": 0,
            "reply_to_id": event.reply_to_id or "",
            "hashtags": _dumps(event.hashtags),
            "mention_ids": _dumps(event.mention_ids),
        }
        post_id = event.post_id
        await self._create(
            keys=[
                keys.post(post_id),
                keys.post_likes(post_id),
                keys.post_comments(post_id),
                keys.post_pending_edit(post_id),
            ],
            args=[self.settings.post_cache_ttl_s, *(x for kv in fields.items() for x in kv)],
        )
        if event.author_username is not None:
            await self.upsert_user(
                event.author_id,
                event.author_username,
                event.author_display_name or event.author_username,
                only_if_missing=True,
            )

    async def store_updated(self, post_id: str, content: str, edited_at: datetime) -> None:
        await self._update(
            keys=[keys.post(post_id), keys.post_pending_edit(post_id)],
            args=[content, to_ms(edited_at), self.settings.post_cache_ttl_s],
        )

    async def delete(self, post_id: str) -> list[str]:
        """Tombstone the post and drop its cache; returns its mention ids (if cached)."""
        mentions_raw = await self.redis.hget(keys.post(post_id), "mention_ids")
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.tombstone(post_id), "1", ex=self.settings.tombstone_ttl_s)
        pipe.delete(
            keys.post(post_id),
            keys.post_likes(post_id),
            keys.post_comments(post_id),
            keys.post_pending_edit(post_id),
        )
        await pipe.execute()
        return list(orjson.loads(mentions_raw)) if mentions_raw else []

    async def count_like(self, post_id: str, user_id: str, *, add: bool) -> None:
        await self._count(
            keys=[keys.post(post_id), keys.post_likes(post_id)],
            args=[user_id, "1" if add else "-1", "like_count", self.settings.post_cache_ttl_s],
        )
        if add:
            await self.redis.sadd(keys.liked(user_id), post_id)
        else:
            await self.redis.srem(keys.liked(user_id), post_id)

    async def count_comment(self, post_id: str, comment_id: str, *, add: bool) -> None:
        await self._count(
            keys=[keys.post(post_id), keys.post_comments(post_id)],
            args=[
                comment_id,
                "1" if add else "-1",
                "comment_count",
                self.settings.post_cache_ttl_s,
            ],
        )

    # ------------------------------------------------------------------ users
    async def upsert_user(
        self, user_id: str, username: str, display_name: str, *, only_if_missing: bool = False
    ) -> None:
        key = keys.user(user_id)
        if only_if_missing and await self.redis.exists(key):
            return
        await self.redis.hset(key, mapping={"username": username, "display_name": display_name})

    async def delete_user(self, user_id: str) -> None:
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(keys.user(user_id))
        pipe.set(keys.user_tombstone(user_id), "1", ex=self.settings.tombstone_ttl_s)
        # The token deny-list: the account's unexpired tokens get 401 on every replica.
        pipe.zadd(keys.DELETED_USERS, {user_id: now})
        pipe.zremrangebyscore(keys.DELETED_USERS, "-inf", now - self.settings.deny_list_keep_s)
        await pipe.execute()

    async def deleted_since(self, since: datetime) -> list[tuple[str, datetime]]:
        rows = await self.redis.zrangebyscore(
            keys.DELETED_USERS, since.timestamp(), "+inf", withscores=True
        )
        return [(str(member), datetime.fromtimestamp(score, UTC)) for member, score in rows]

    async def mark_likes_tracked(self, user_id: str) -> None:
        await self.redis.set(keys.liked_meta(user_id), "1", nx=True)

    async def summaries(self, user_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for user_id in ids:
            pipe.hgetall(keys.user(user_id))
        rows = await pipe.execute()
        return {uid: _summary(uid, row) for uid, row in zip(ids, rows, strict=True) if row}

    # -------------------------------------------------------------- hydration
    async def hydrate(
        self,
        parsed: Sequence[tuple[str, str, str]],
        viewer_id: str | None,
        *,
        likes_tracked: bool | None = None,
    ) -> Hydrated:
        """Posts for feed entries given as (member, post id, author id), in order.

        One pipelined round trip on the common path: post hashes, tombstones, the authors'
        summaries and account tombstones, the viewer's liked flags. A second one only for
        mentioned users who are not among the authors; post_service only for misses.
        ``likes_tracked`` is whether the viewer's liked set is complete, when the caller
        already knows it.
        """
        authors = list(dict.fromkeys(author for _m, _p, author in parsed))
        post_ids = [post_id for _m, post_id, _a in parsed]
        pipe = self.redis.pipeline(transaction=False)
        for post_id in post_ids:
            pipe.hgetall(keys.post(post_id))
            pipe.exists(keys.tombstone(post_id))
        for author_id in authors:
            pipe.hgetall(keys.user(author_id))
            pipe.exists(keys.user_tombstone(author_id))
        viewer = viewer_id or ""
        ask_tracked = viewer_id is not None and likes_tracked is None
        if ask_tracked:
            pipe.exists(keys.liked_meta(viewer))
        ask_liked = viewer_id is not None and likes_tracked is not False and bool(post_ids)
        if ask_liked:
            pipe.smismember(keys.liked(viewer), post_ids)
        raw = await pipe.execute()
        flags: list[Any] = raw.pop() if ask_liked else []
        if ask_tracked:
            likes_tracked = bool(raw.pop())
        likes_tracked = True if viewer_id is None else bool(likes_tracked)
        n = 2 * len(post_ids)
        users: dict[str, dict[str, str]] = {}
        gone_authors: set[str] = set()
        for j, author_id in enumerate(authors):
            row, user_tomb = raw[n + 2 * j], raw[n + 2 * j + 1]
            if user_tomb:
                gone_authors.add(author_id)
            elif row:
                users[author_id] = _summary(author_id, row)
        liked_flags = dict(zip(post_ids, flags, strict=True)) if flags else {}

        dropped: list[str] = []
        cached: dict[str, dict[str, Any]] = {}
        alive: list[tuple[str, str]] = []  # (member, post_id)
        for i, (member, post_id, author_id) in enumerate(parsed):
            row, tomb = raw[2 * i], raw[2 * i + 1]
            if tomb or author_id in gone_authors:
                dropped.append(member)
                continue
            alive.append((member, post_id))
            if row:
                cached[post_id] = row
        mentioned = [
            u
            for r in cached.values()
            if r.get("mention_ids", "[]") != "[]"
            for u in orjson.loads(r.get("mention_ids") or "[]")
            if u not in users
        ]
        if mentioned:
            users.update(await self.summaries(mentioned))

        def complete(row: Mapping[str, Any]) -> bool:
            # A mention of an unknown (e.g. deleted) user is left out, not worth a call.
            return row["author_id"] in users

        wanted = [pid for _m, pid in alive if not (pid in cached and complete(cached[pid]))]
        if not likes_tracked:
            wanted = [pid for _m, pid in alive]
        fetched: dict[str, dict[str, Any]] = {}
        if wanted:
            try:
                fetched = {p["id"]: p for p in await self.source.batch(wanted, viewer_id)}
            except Exception as exc:
                missing = [pid for pid in wanted if pid not in cached]
                if missing:
                    _log.warning("post_batch_unavailable", error=type(exc).__name__)
                    raise ServiceUnavailable(
                        "Posts are temporarily unavailable", dependency="post_service"
                    ) from exc
            else:
                await self._fill(fetched)
                gone = set(wanted) - set(fetched)
                dropped += [m for m, pid in alive if pid in gone]
                alive = [(m, pid) for m, pid in alive if pid not in gone]

        liked = {pid for pid, flag in liked_flags.items() if flag}

        posts: list[dict[str, Any]] = []
        for _member, post_id in alive:
            if post_id in fetched and (post_id not in cached or not complete(cached[post_id])):
                post = dict(fetched[post_id])
                if likes_tracked:
                    post["liked_by_me"] = post_id in liked
                posts.append(post)
                continue
            if post_id not in cached:
                continue
            row = cached[post_id]
            liked_by_me = (
                post_id in liked
                if likes_tracked
                else bool(fetched.get(post_id, {}).get("liked_by_me", False))
            )
            posts.append(self._from_row(post_id, row, users, liked_by_me))
        return Hydrated(posts, dropped)

    @staticmethod
    def _from_row(
        post_id: str,
        row: Mapping[str, Any],
        users: Mapping[str, dict[str, str]],
        liked_by_me: bool,
    ) -> dict[str, Any]:
        edited = int(row.get("edited_at") or 0)
        mentions = orjson.loads(row.get("mention_ids") or "[]")
        return {
            "id": post_id,
            "author": users[row["author_id"]],
            "content": row["content"],
            "created_at": format_timestamp(from_ms(int(row["created_at"]))),
            "edited_at": format_timestamp(from_ms(edited)) if edited else None,
            "reply_to_id": row.get("reply_to_id") or None,
            "hashtags": orjson.loads(row.get("hashtags") or "[]"),
            "mentions": [users[m] for m in mentions if m in users],
            "like_count": int(row.get("like_count") or 0),
            "comment_count": int(row.get("comment_count") or 0),
            "liked_by_me": liked_by_me,
        }

    async def _fill(self, fetched: dict[str, dict[str, Any]]) -> None:
        """Cache post_service's answers as fallback copies; a fetched post whose content is
        older than the cache's (an edit handled meanwhile) is shown with the cache's."""
        if not fetched:
            return
        for post_id, post in fetched.items():
            fields: dict[str, int | str] = {
                "author_id": post["author"]["id"],
                "content": post["content"],
                "created_at": _iso_ms(post["created_at"]) or 0,
                "edited_at": _iso_ms(post.get("edited_at")) or 0,
                "reply_to_id": post.get("reply_to_id") or "",
                "hashtags": _dumps(post.get("hashtags") or []),
                "mention_ids": _dumps([m["id"] for m in post.get("mentions") or []]),
                "like_count": int(post.get("like_count") or 0),
                "comment_count": int(post.get("comment_count") or 0),
            }
            content, edited = await self._fill_one(
                keys=[keys.post(post_id), keys.post_pending_edit(post_id)],
                args=[
                    self.settings.post_cache_fallback_ttl_s,
                    fields["edited_at"],
                    *(x for kv in fields.items() for x in kv),
                ],
            )
            edited_ms = int(edited or 0)
            if content is not None and edited_ms > int(fields["edited_at"]):
                fetched[post_id] = {
                    **post,
                    "content": content,
                    "edited_at": format_timestamp(from_ms(edited_ms)),
                }
        pipe = self.redis.pipeline(transaction=False)
        for post in fetched.values():
            for summary in [post["author"], *(post.get("mentions") or [])]:
                user_key = keys.user(summary["id"])
                pipe.hsetnx(user_key, "username", summary["username"])
                pipe.hsetnx(user_key, "display_name", summary["display_name"])
        await pipe.execute()
