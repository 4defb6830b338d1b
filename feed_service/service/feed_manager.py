"""FeedManager: every home-feed operation in one place (insert, merge, unmerge, trim, rebuild,
read). The key layout lives in :mod:`feed_service.repository.keys`; docs/feed.md explains it.

Feeds are Redis sorted sets of ``<post_id>:<author_id>`` scored by creation time in ms. A feed
is "built" while its marker exists; the marker's TTL is the idle time, so feeds of inactive
users expire (feed and marker together) and fan-out skips them. A missing feed is rebuilt on
its next read from network_service (followees) and post_service (recent posts).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import LockError, NoScriptError

from common.errors import ServiceUnavailable
from common.logging import get_logger
from feed_service.repository import keys
from feed_service.repository.redis import RedisClient
from feed_service.repository.sources import NetworkSource, PostSource, SourceNotFound
from feed_service.settings import FeedSettings

__all__ = [
    "Cursor",
    "Entry",
    "FeedManager",
    "entry_author",
    "entry_post",
    "entry_refs",
    "make_entry",
]

Entry = tuple[str, int]
"""(member ``<post_id>:<author_id>``, score ms)."""
Cursor = tuple[int, str]
"""Keyset position: the (score, member) of the last entry shown."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a built feed, as the first round trip of a read finds it."""

    entries: list[Entry]
    more: bool
    likes_tracked: bool
    own_seen_ms: int
    """The newest own post the feed is known to hold (0: unknown)."""


_log = get_logger("feed_service.feeds")

_CHUNK = 1000
# Users per script call: a call holds Redis for about 2 µs per user and entry, so reads wait
# at most a fraction of a millisecond behind a fan-out; the calls of a chunk are pipelined.
_SCRIPT_USERS = 100

# Single-node fast path of ``insert``: one script call per chunk of users instead of ~4
# commands per follower. KEYS: feed1, marker1, feed2, marker2, ... ARGV: cap, require_marker,
# trim-above, score/member pairs. Skips missing markers; trims only once a feed holds more
# than cap + slack (ZCARD is O(1), a trim is not); sets a TTL only on a feed key the ZADD
# created (a read renews the TTLs of the feed and its marker together). On a Redis Cluster a
# call carries the users of one hash slot only (``FeedManager._script_groups``).
_BATCH_ADD_LUA = """
local cap = tonumber(ARGV[1])
local above = tonumber(ARGV[3])
local written = 0
for i = 1, #KEYS, 2 do
  local ttl = redis.call('PTTL', KEYS[i + 1])
  if ARGV[2] == '0' or ttl ~= -2 then
    for j = 4, #ARGV, 2 do redis.call('ZADD', KEYS[i], ARGV[j], ARGV[j + 1]) end
    if redis.call('ZCARD', KEYS[i]) > above then
      redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(cap + 1))
    end
    if ttl > 0 and redis.call('PTTL', KEYS[i]) == -1 then redis.call('PEXPIRE', KEYS[i], ttl) end
    written = written + 1
  end
end
return written
"""

# One home-feed page in one round trip (the read path's first; hydration is the second).
# KEYS: feed, marker, following, liked-marker of the reader (one slot), then on a single node
# only the big-author set. ARGV: count, cursor score ('' = first page), cursor member, idle ms,
# refresh-below ms, then the author index key's prefix/suffix and its marker's prefix/suffix.
# Returns false for an unbuilt feed, else {likes tracked, own-post watermark, authors whose
# index must be loaded first, flat member/score list newest first (at most count)}.
# The idle TTL is refreshed only when less than refresh-below is left (about once a day per
# active reader), not on every read. The keyset skips the cursor's ties already shown.
_PAGE_LUA = """
local ttl = redis.call('PTTL', KEYS[2])
if ttl == -2 then return false end
if ttl < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
local count = tonumber(ARGV[1])
local function range(key)
  if ARGV[2] == '' then return redis.call('ZREVRANGE', key, 0, count - 1, 'WITHSCORES') end
  local ties = redis.call('ZCOUNT', key, ARGV[2], ARGV[2])
  local rows = redis.call('ZREVRANGEBYSCORE', key, ARGV[2], '-inf', 'WITHSCORES',
    'LIMIT', 0, count + ties)
  local top = tonumber(ARGV[2])
  local out = {}
  for i = 1, #rows, 2 do
    local score = tonumber(rows[i + 1])
    if score < top or rows[i] < ARGV[3] then
      out[#out + 1] = rows[i]
      out[#out + 1] = rows[i + 1]
      if #out >= 2 * count then break end
    end
  end
  return out
end
local page = range(KEYS[1])
local missing = {}
if KEYS[5] and redis.call('SCARD', KEYS[5]) > 0 then
  local big = redis.call('SINTER', KEYS[5], KEYS[3])
  if #big > 0 then
    local seen, rows = {}, {}
    local function take(list)
      for i = 1, #list, 2 do
        if not seen[list[i]] then
          seen[list[i]] = true
          rows[#rows + 1] = {list[i], tonumber(list[i + 1]), list[i + 1]}
        end
      end
    end
    take(page)
    for _, author in ipairs(big) do
      if redis.call('EXISTS', ARGV[8] .. author .. ARGV[9]) == 0 then
        missing[#missing + 1] = author
      else
        take(range(ARGV[6] .. author .. ARGV[7]))
      end
    end
    table.sort(rows, function(a, b)
      if a[2] ~= b[2] then return a[2] > b[2] end
      return a[1] > b[1]
    end)
    page = {}
    for i = 1, math.min(count, #rows) do
      page[#page + 1] = rows[i][1]
      page[#page + 1] = rows[i][3]
    end
  end
end
local own = redis.call('HGET', KEYS[2], 'own_seen') or ''
return {redis.call('EXISTS', KEYS[4]), own, missing, page}
"""

# KEYS: marker. ARGV: created ms. The newest own post the feed holds (read-your-own-writes
# watermark), only ever raised, and only on a built feed.
_OWN_SEEN_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local seen = tonumber(redis.call('HGET', KEYS[1], 'own_seen') or '0') or 0
if tonumber(ARGV[1]) > seen then redis.call('HSET', KEYS[1], 'own_seen', ARGV[1]) end
return 1
"""


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sort_key(entry: Entry) -> tuple[int, str]:
    return entry[1], entry[0]


def make_entry(post_id: str, author_id: str, created_ms: int) -> Entry:
    """The feed entry of a post: callers never spell the member format themselves."""
    return keys.entry(post_id, author_id), created_ms


def entry_post(member: str) -> str:
    """The post id of a feed member."""
    return keys.parse_entry(member)[0]


def entry_author(member: str) -> str:
    """The author id of a feed member."""
    return keys.parse_entry(member)[1]


def entry_refs(entries: Sequence[Entry]) -> list[tuple[str, str, str]]:
    """(member, post id, author id) of each entry, in order (for hydration)."""
    return [(member, *keys.parse_entry(member)) for member, _score in entries]


class FeedManager:
    def __init__(
        self,
        redis: RedisClient,
        settings: FeedSettings,
        posts: PostSource,
        network: NetworkSource,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.posts = posts
        self.network = network
        self._batch_add = redis.register_script(_BATCH_ADD_LUA)
        self._page = redis.register_script(_PAGE_LUA)
        self._own_seen = redis.register_script(_OWN_SEEN_LUA)

    def _pipeline(self) -> Any:
        # Non-transactional everywhere: on a cluster the pipeline is split per node, and every
        # command in it touches keys of one slot only.
        return self.redis.pipeline(transaction=False)

    # ------------------------------------------------------------------ writes
    async def insert(
        self,
        user_ids: Sequence[str],
        entries: Sequence[Entry],
        *,
        require_marker: bool = True,
    ) -> int:
        """Add ``entries`` to each user's built feed, pipelined; returns how many took them.

        A missing marker (inactive or unbuilt feed) is skipped: that feed is rebuilt on its
        next read. A feed is trimmed only once it holds more than cap + slack entries and
        gets the marker's TTL only when the ZADD created it (a read renews both together).
        One pipeline of script calls per chunk of users, on a single node and on a cluster
        alike; on a cluster a call carries the users of one hash slot (a script's keys must
        share a slot), and the pipeline goes to each node as one pipeline of its own, all
        nodes at once.
        """
        if not entries or not user_ids:
            return 0
        cap = self.settings.feed_cap
        args: list[Any] = [cap, "1" if require_marker else "0", cap + self.settings.trim_slack]
        for member, score in entries:
            args += [score, member]
        written = 0
        for chunk in _chunks(list(dict.fromkeys(user_ids)), _CHUNK):
            written += await self._insert_scripted(self._script_groups(chunk), args)
        return written

    def _script_groups(self, users: Sequence[str]) -> list[Sequence[str]]:
        """The users of each script call: at most ``_SCRIPT_USERS``, of one slot on a cluster.

        On a cluster the calls are ordered by node, then slot, so each node's share of the
        pipeline is contiguous (redis-py splits a cluster pipeline per node either way).
        """
        if not self.settings.redis_cluster:
            return list(_chunks(users, _SCRIPT_USERS))
        by_slot: dict[int, list[str]] = {}
        for user_id in users:
            by_slot.setdefault(self.redis.keyslot(keys.feed(user_id)), []).append(user_id)
        node_of = self.redis.nodes_manager.get_node_from_slot
        ordered = sorted(by_slot, key=lambda slot: (node_of(slot).name, slot))
        return [group for slot in ordered for group in _chunks(by_slot[slot], _SCRIPT_USERS)]

    async def _insert_scripted(self, groups: Sequence[Sequence[str]], args: list[Any]) -> int:
        """One pipeline of script calls, one per group of users.

        EVALSHA by hand: redis-py's pipelined scripts cost a SCRIPT EXISTS round trip per
        pipeline. After a Redis restart (script cache empty) the script is loaded (on every
        node of a cluster) and the chunk written again, which is idempotent.
        """
        sha = self._batch_add.sha
        for attempt in range(2):
            pipe = self._pipeline()
            for group in groups:
                group_keys = [k for u in group for k in (keys.feed(u), keys.feed_meta(u))]
                # execute_command: redis-py's cluster pipeline blocks its evalsha method
                # (keys could span slots), not the command; these keys share one slot.
                pipe.execute_command("EVALSHA", sha, len(group_keys), *group_keys, *args)
            try:
                return sum(int(n) for n in await pipe.execute())
            except NoScriptError:
                if attempt:
                    raise
                await self.redis.script_load(_BATCH_ADD_LUA)
        raise AssertionError("unreachable")

    def _write(self, pipe: Any, key: str, mapping: dict[str, int], ttl_ms: int) -> None:
        pipe.zadd(key, mapping)
        pipe.zremrangebyrank(key, 0, -(self.settings.feed_cap + 1))
        if ttl_ms > 0:
            pipe.pexpire(key, ttl_ms)

    async def remove(self, user_ids: Sequence[str], members: Sequence[str]) -> None:
        """Remove ``members`` from each user's feed (idempotent)."""
        if not members or not user_ids:
            return
        for chunk in _chunks(list(dict.fromkeys(user_ids)), _CHUNK):
            pipe = self._pipeline()
            for user_id in chunk:
                pipe.zrem(keys.feed(user_id), *members)
            await pipe.execute()

    async def merge(self, user_id: str, author_id: str) -> None:
        """Follow: the followee's recent posts join the follower's (built) feed."""
        await self.ensure_author_index(author_id)
        entries = await self.author_entries(author_id, self.settings.feed_cap)
        await self.insert([user_id], entries)

    async def unmerge(self, user_id: str, author_id: str) -> None:
        """Unfollow: every entry of that author leaves the feed (authors are in the members),
        except the posts that mention the reader: those stay whoever wrote them (api.md)."""
        suffix = ":" + author_id
        current = await self.redis.zrange(keys.feed(user_id), 0, -1)
        members = [m for m in current if m.endswith(suffix)]
        if not members:
            return
        # post_service is asked, not the post cache: a cached copy may be gone (flush, TTL).
        # Its newest `cap` mentions are exact: an older one is outside the feed's window.
        mentioning = await self.posts.mentioning(user_id, self.settings.feed_cap)
        kept = {make_entry(*row)[0] for row in mentioning}
        members = [m for m in members if m not in kept]
        if members:
            await self.redis.zrem(keys.feed(user_id), *members)

    # ------------------------------------------------------------ author index
    async def record_post(self, author_id: str, member: str, score: int) -> None:
        pipe = self._pipeline()
        self._write(pipe, keys.author_posts(author_id), {member: score}, -1)
        await pipe.execute()

    async def forget_post(self, author_id: str, member: str) -> None:
        await self.redis.zrem(keys.author_posts(author_id), member)

    async def ensure_author_index(self, author_id: str) -> None:
        """Rebuild the author's recent-post index from post_service when its marker is gone."""
        if await self.redis.exists(keys.author_posts_meta(author_id)):
            return
        recent = await self.posts.recent([author_id], self.settings.feed_cap)
        entries = await self.without_tombstones([make_entry(*row) for row in recent])
        pipe = self._pipeline()
        if entries:
            self._write(pipe, keys.author_posts(author_id), dict(entries), -1)
        pipe.set(keys.author_posts_meta(author_id), "1")
        await pipe.execute()

    async def author_entries(self, author_id: str, limit: int) -> list[Entry]:
        key = keys.author_posts(author_id)
        rows = await self.redis.zrevrange(key, 0, limit - 1, withscores=True)
        return [(m, int(s)) for m, s in rows]

    # -------------------------------------------------------- follower replica
    async def add_follow(self, follower_id: str, followee_id: str) -> None:
        pipe = self._pipeline()
        pipe.sadd(keys.followers(followee_id), follower_id)
        await pipe.execute()
        # The following set is only trusted while the feed is built; otherwise the rebuild
        # fetches it whole.
        if await self.is_built(follower_id):
            await self.redis.sadd(keys.following(follower_id), followee_id)

    async def remove_follow(self, follower_id: str, followee_id: str) -> None:
        await self.redis.srem(keys.followers(followee_id), follower_id)
        await self.redis.srem(keys.following(follower_id), followee_id)

    async def ensure_followers(self, author_id: str) -> None:
        """Load the author's follower set from network_service when its marker is gone."""
        if await self.redis.exists(keys.followers_meta(author_id)):
            return
        try:
            fetched = await self.network.followers(author_id)
        except SourceNotFound:
            fetched = []
        for chunk in _chunks(fetched, 5000):
            await self.redis.sadd(keys.followers(author_id), *chunk)
        await self.redis.set(keys.followers_meta(author_id), "1")

    async def followers(self, author_id: str, *, load: bool = True) -> list[str]:
        """The author's followers (loaded first when the replica's marker is gone, unless not
        ``load``), read with SSCAN in slices so a large set never holds Redis for long.

        Unordered: a follower added during the scan may be missed, but the follow merges the
        author's index (which already holds the post) into its feed, so nothing is lost.
        """
        if load:
            await self.ensure_followers(author_id)
        found: list[str] = []
        async for member in self.redis.sscan_iter(
            keys.followers(author_id), count=self.settings.fanout_batch_size
        ):
            found.append(member)
        return list(dict.fromkeys(found))  # SSCAN may return an element twice

    async def start_account(self, user_id: str) -> None:
        """A new account's follower set and author index are complete from the start: every
        later change arrives as an event, so neither is ever loaded from the sources."""
        pipe = self._pipeline()
        pipe.set(keys.followers_meta(user_id), "1", nx=True)
        pipe.set(keys.author_posts_meta(user_id), "1", nx=True)
        await pipe.execute()

    async def sync_followers(self, user_id: str, truth: set[str]) -> int:
        """Make the follower replica equal ``truth`` (and complete); returns the ids fixed."""
        have = set(await self.redis.smembers(keys.followers(user_id)))
        if have == truth and await self.redis.exists(keys.followers_meta(user_id)):
            return 0
        pipe = self._pipeline()
        pipe.delete(keys.followers(user_id))
        if truth:
            pipe.sadd(keys.followers(user_id), *truth)
        pipe.set(keys.followers_meta(user_id), "1")
        await pipe.execute()
        return len(have ^ truth)

    async def sync_following(self, user_id: str, truth: set[str]) -> int:
        """Make the followee replica of a built feed equal ``truth``; returns the ids fixed."""
        have = set(await self.redis.smembers(keys.following(user_id)))
        if have == truth:
            return 0
        pipe = self._pipeline()
        pipe.delete(keys.following(user_id))
        if truth:
            pipe.sadd(keys.following(user_id), *truth)
            pipe.pexpire(keys.following(user_id), self.settings.idle_ttl_ms)
        await pipe.execute()
        return len(have ^ truth)

    async def follower_count(self, author_id: str) -> int:
        return int(await self.redis.scard(keys.followers(author_id)))

    # ------------------------------------------------------------ big accounts
    async def mark_big(self, author_id: str) -> None:
        await self.redis.sadd(keys.BIG_AUTHORS, author_id)

    async def unmark_big(self, author_id: str) -> None:
        """Only after the author's indexed posts were fanned out to its followers: posts of
        the big period live only in the author index until then."""
        await self.redis.srem(keys.BIG_AUTHORS, author_id)

    async def hybrid_state(self, author_id: str) -> tuple[bool, bool]:
        """(big now, was marked): big above ``hybrid_threshold``; a marked author stays big
        down to ``hybrid_threshold * hybrid_unmark_ratio`` (hysteresis, so an account around
        the threshold does not flip at every follow and unfollow)."""
        count = await self.follower_count(author_id)
        marked = await self.is_big(author_id)
        threshold = self.settings.hybrid_threshold
        if count > threshold:
            return True, marked
        return marked and count >= threshold * self.settings.hybrid_unmark_ratio, marked

    async def is_big(self, author_id: str) -> bool:
        return bool(await self.redis.sismember(keys.BIG_AUTHORS, author_id))

    async def followed_big_authors(self, user_id: str) -> list[str]:
        big = sorted(await self.redis.smembers(keys.BIG_AUTHORS))
        if not big:
            return []
        flags = await self.redis.smismember(keys.following(user_id), big)
        return [b for b, f in zip(big, flags, strict=True) if f]

    # ------------------------------------------------------------ lifecycle
    async def is_built(self, user_id: str) -> bool:
        return bool(await self.redis.exists(keys.feed_meta(user_id)))

    async def ensure_feed(self, user_id: str) -> bool:
        """Build the feed if it is missing; True when a rebuild ran. Single-flight per user."""
        if await self.is_built(user_id):
            return False
        lock = self.redis.lock(
            keys.feed_lock(user_id),
            timeout=self.settings.rebuild_lock_s,
            blocking_timeout=self.settings.rebuild_lock_s,
        )
        try:
            async with lock:
                if await self.is_built(user_id):
                    return False
                await self.rebuild(user_id)
                return True
        except LockError as exc:
            # Another reader's rebuild is still running after the wait: ask to come back.
            raise ServiceUnavailable("The feed is being rebuilt", retry_after=2) from exc

    async def rebuild(self, user_id: str) -> int:
        """Regenerate the feed from the sources of truth; returns the entry count.

        The marker is set first so fan-outs racing with the rebuild write into the new feed
        instead of skipping it; entries are then merged in (ZADD is idempotent).
        """
        try:
            followees = await self.network.followees(user_id)
        except SourceNotFound:
            followees = []  # not (or no longer) in the graph: a feed of one's own posts
        ttl = self.settings.idle_ttl_ms
        pipe = self._pipeline()
        pipe.delete(keys.feed(user_id), keys.following(user_id))
        pipe.hset(keys.feed_meta(user_id), mapping={"built_at": int(time.time() * 1000)})
        pipe.pexpire(keys.feed_meta(user_id), ttl)
        if followees:
            pipe.sadd(keys.following(user_id), *followees)
            pipe.pexpire(keys.following(user_id), ttl)
        await pipe.execute()
        try:
            entries = await self._rebuilt_entries(user_id, followees)
            await self.insert([user_id], entries)
            own_ms = [ms for member, ms in entries if entry_author(member) == user_id]
            if own_ms:
                await self.note_own_post(user_id, max(own_ms))
        except BaseException:
            # A half-built feed must not stay marked built, or no read would rebuild it again.
            with contextlib.suppress(Exception):
                await self.redis.delete(keys.feed_meta(user_id))
            raise
        _log.info("feed_rebuilt", user_id=user_id, followees=len(followees), entries=len(entries))
        return len(entries)

    async def _rebuilt_entries(self, user_id: str, followees: Sequence[str]) -> list[Entry]:
        cap = self.settings.feed_cap
        recent = await self.source_entries([user_id, *followees])
        # Posts mentioning the user reach its feed whoever wrote them (post.created puts them
        # there), so a rebuild brings them back too.
        recent += [make_entry(*row) for row in await self.posts.mentioning(user_id, cap)]
        entries = await self.without_tombstones(list(dict.fromkeys(recent)))
        entries.sort(key=_sort_key, reverse=True)
        return entries[:cap]

    async def source_entries(self, authors: Sequence[str]) -> list[Entry]:
        """The authors' recent posts from post_service, as a rebuild takes them: enough per
        author that the newest ``feed_cap`` of all are there, fewer the more authors."""
        cap = self.settings.feed_cap
        per_author = min(cap, max(20, 2 * cap // max(1, len(authors))))
        return [make_entry(*row) for row in await self.posts.recent(authors, per_author)]

    async def entries(self, user_id: str) -> dict[str, int]:
        """Every entry of the user's feed: member -> score."""
        rows = await self.redis.zrange(keys.feed(user_id), 0, -1, withscores=True)
        return {m: int(s) for m, s in rows}

    async def built_users(self) -> AsyncIterator[str]:
        """Every user whose feed is built (SCAN over the markers: for maintenance only)."""
        prefix, suffix = keys.feed_meta_pattern()
        async for key in self.redis.scan_iter(match=f"{prefix}*{suffix}", count=1000):
            yield key[len(prefix) : len(key) - len(suffix)]

    async def drop_user(self, user_id: str) -> None:
        """A deleted account: its feed data and replicas go."""
        for followee in await self.redis.smembers(keys.following(user_id)):
            await self.redis.srem(keys.followers(followee), user_id)
        await self.redis.srem(keys.BIG_AUTHORS, user_id)
        pipe = self._pipeline()
        for key in (
            keys.feed(user_id),
            keys.feed_meta(user_id),
            keys.following(user_id),
            keys.followers(user_id),
            keys.followers_meta(user_id),
            keys.author_posts(user_id),
            keys.author_posts_meta(user_id),
            keys.liked(user_id),
            keys.liked_meta(user_id),
            keys.notifications(user_id),
            keys.notif_read(user_id),
        ):
            pipe.delete(key)
        await pipe.execute()

    # ------------------------------------------------------------------ reads
    async def read_page(
        self, user_id: str, limit: int, cursor: Cursor | None, shown: int = 0
    ) -> Page | None:
        """One page of a built feed in one script call (``None``: the feed is not built).

        Big accounts the reader follows are merged in with the same keyset (on a single node
        inside the script; a cluster reads their author indexes afterwards, other slots).
        The pass stops at ``feed_cap`` entries in all, as full fan-out would .
        """
        limit = min(limit, self.settings.feed_cap - shown)
        count = max(limit, 0) + 1
        idle = self.settings.idle_ttl_ms
        refresh_below = idle - min(int(self.settings.touch_interval_s * 1000), idle // 2)
        page_keys = [
            keys.feed(user_id),
            keys.feed_meta(user_id),
            keys.following(user_id),
            keys.liked_meta(user_id),
        ]
        if not self.settings.redis_cluster:
            page_keys.append(keys.BIG_AUTHORS)
        index_prefix, index_suffix = keys.author_posts_pattern()
        meta_prefix, meta_suffix = keys.author_posts_meta_pattern()
        for _attempt in range(2):
            raw = await self._page(
                keys=page_keys,
                args=[
                    count,
                    "" if cursor is None else cursor[0],
                    "" if cursor is None else cursor[1],
                    idle,
                    refresh_below,
                    index_prefix,
                    index_suffix,
                    meta_prefix,
                    meta_suffix,
                ],
            )
            if raw is None:
                return None
            tracked, own, missing, flat = raw
            if not missing:
                break
            for author in missing:  # rare: an author index lost with Redis
                await self.ensure_author_index(author)
        entries = [(flat[i], int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]
        if self.settings.redis_cluster:
            entries = await self._merge_big(user_id, entries, cursor, count)
        if limit <= 0:
            return Page([], False, bool(tracked), int(own or 0))
        more = len(entries) > limit and shown + limit < self.settings.feed_cap
        return Page(entries[:limit], more, bool(tracked), int(own or 0))

    async def _merge_big(
        self, user_id: str, entries: list[Entry], cursor: Cursor | None, count: int
    ) -> list[Entry]:
        """Cluster path of the hybrid merge: the author indexes live in other slots."""
        big = await self.followed_big_authors(user_id)
        if not big:
            return entries
        merged = dict(entries)
        for author in big:
            await self.ensure_author_index(author)
            for member, score in await self._range_after(keys.author_posts(author), cursor, count):
                merged[member] = score
        return sorted(merged.items(), key=_sort_key, reverse=True)[:count]

    async def note_own_post(self, user_id: str, created_ms: int) -> None:
        """The user's own post ``created_ms`` is in their feed (read-your-own-writes)."""
        await self._own_seen(keys=[keys.feed_meta(user_id)], args=[created_ms])

    async def _range_after(self, key: str, cursor: Cursor | None, count: int) -> list[Entry]:
        if cursor is None:
            rows = await self.redis.zrevrange(key, 0, count - 1, withscores=True)
            return [(m, int(s)) for m, s in rows]
        score, member = cursor
        # Entries sharing the cursor's score are ordered by member; fetch enough to skip the
        # ones already shown.
        ties = int(await self.redis.zcount(key, score, score))
        rows = await self.redis.zrevrangebyscore(
            key, score, "-inf", start=0, num=count + ties, withscores=True
        )
        result = [
            (m, int(s)) for m, s in rows if int(s) < score or (int(s) == score and m < member)
        ]
        return result[:count]

    async def merge_own_recent(self, user_id: str, limit: int, mark_ms: int = 0) -> None:
        """Read-your-own-writes: the reader's newest posts from post_service join their feed.

        The post.created event may not be consumed yet when the author reads right after
        ``POST /posts``; post_service is the source of truth, so ask it (briefly). Its answer
        holds every post committed before the write mark ``mark_ms`` was set (post_service
        marks after the commit), so the watermark rises to it: a marked post missing from
        the answer was deleted, and is not asked for again.
        """
        try:
            recent = await self.posts.recent(
                [user_id], limit, deadline_s=self.settings.own_posts_timeout_s
            )
        except Exception as exc:  # degrade: the event will bring the post shortly
            _log.warning("own_posts_unavailable", error=type(exc).__name__)
            return
        own = [make_entry(pid, aid, ms) for pid, aid, ms in recent if aid == user_id]
        await self.insert([user_id], await self.without_tombstones(own))
        await self.note_own_post(user_id, max([mark_ms, *(ms for _m, ms in own)]))

    async def without_tombstones(self, entries: list[Entry]) -> list[Entry]:
        if not entries:
            return entries
        pipe = self._pipeline()
        for member, _score in entries:
            pipe.exists(keys.tombstone(entry_post(member)))
        flags = await pipe.execute()
        return [e for e, dead in zip(entries, flags, strict=True) if not dead]
