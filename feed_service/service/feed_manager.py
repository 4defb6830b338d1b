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
from typing import Any

from redis.exceptions import LockError

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

_log = get_logger("feed_service.feeds")

_CHUNK = 1000

# Single-node fast path of ``insert``: one script call per batch instead of ~4 commands per
# follower. KEYS: feed1, marker1, feed2, marker2, ... ARGV: cap, require_marker, score/member
# pairs. Same effect as the pipelined path (skip missing markers, add, trim, marker's TTL).
# A Redis Cluster cannot run it (its keys span slots), so cluster deployments pipeline.
_BATCH_ADD_LUA = """
local cap = tonumber(ARGV[1])
local written = 0
for i = 1, #KEYS, 2 do
  local ttl = redis.call('PTTL', KEYS[i + 1])
  if ARGV[2] == '0' or ttl ~= -2 then
    for j = 3, #ARGV, 2 do redis.call('ZADD', KEYS[i], ARGV[j], ARGV[j + 1]) end
    redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(cap + 1))
    if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
    written = written + 1
  end
end
return written
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
        self._batch_add = None if settings.redis_cluster else redis.register_script(_BATCH_ADD_LUA)

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
        next read. Written feeds are trimmed to the cap and get the marker's TTL, so a feed
        expires together with its marker. On a single node one script call per chunk; on a
        cluster (whose pipelines cannot carry scripts, and a chunk's keys span slots) two
        pipelined rounds: the markers' TTLs, then ZADD, trim and PEXPIRE.
        """
        if not entries or not user_ids:
            return 0
        mapping = {member: score for member, score in entries}
        written = 0
        if self._batch_add is not None:
            args: list[Any] = [self.settings.feed_cap, "1" if require_marker else "0"]
            for member, score in entries:
                args += [score, member]
            for chunk in _chunks(list(dict.fromkeys(user_ids)), _CHUNK):
                batch_keys = [k for u in chunk for k in (keys.feed(u), keys.feed_meta(u))]
                written += int(await self._batch_add(keys=batch_keys, args=args))
            return written
        for chunk in _chunks(list(dict.fromkeys(user_ids)), _CHUNK):
            ttls: list[int] = [-1] * len(chunk)
            if require_marker:
                pipe = self._pipeline()
                for user_id in chunk:
                    pipe.pttl(keys.feed_meta(user_id))
                ttls = [int(t) for t in await pipe.execute()]
            pipe = self._pipeline()
            for user_id, ttl in zip(chunk, ttls, strict=True):
                if ttl == -2:
                    continue
                self._write(pipe, keys.feed(user_id), mapping, ttl)
                written += 1
            await pipe.execute()
        return written

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

    async def followers(self, author_id: str) -> list[str]:
        """The author's followers, sorted (so fan-out batches are deterministic)."""
        await self.ensure_followers(author_id)
        return await self.known_followers(author_id)

    async def known_followers(self, author_id: str) -> list[str]:
        """The follower replica as it is (not loaded when its marker is missing), sorted."""
        return sorted(await self.redis.smembers(keys.followers(author_id)))

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

    async def touch(self, user_id: str) -> None:
        """A read keeps the feed active for another idle period."""
        ttl = self.settings.idle_ttl_ms
        pipe = self._pipeline()
        pipe.hset(keys.feed_meta(user_id), "last_read", int(time.time() * 1000))
        pipe.pexpire(keys.feed_meta(user_id), ttl)
        pipe.pexpire(keys.feed(user_id), ttl)
        pipe.pexpire(keys.following(user_id), ttl)
        await pipe.execute()

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

    async def read_entries(
        self, user_id: str, limit: int, cursor: Cursor | None, shown: int = 0
    ) -> tuple[list[Entry], bool]:
        """Up to ``limit`` entries after ``cursor``, newest first, and whether more exist.

        Big accounts the reader follows are merged in from their author index with the same
        keyset, so the result equals what full fan-out would have stored: that includes the
        cap. A fanned-out feed holds the newest ``feed_cap`` entries, but the feed plus the
        author indexes hold up to ``feed_cap`` each, so one pass over the pages (``shown``
        entries before this page, carried in the cursor) stops at ``feed_cap`` in all.
        """
        limit = min(limit, self.settings.feed_cap - shown)
        if limit <= 0:
            return [], False
        sources = [keys.feed(user_id)]
        for author in await self.followed_big_authors(user_id):
            await self.ensure_author_index(author)
            sources.append(keys.author_posts(author))
        merged: dict[str, int] = {}
        for key in sources:
            for member, score in await self._range_after(key, cursor, limit + 1):
                merged[member] = score
        ordered = sorted(merged.items(), key=_sort_key, reverse=True)
        more = len(ordered) > limit and shown + limit < self.settings.feed_cap
        return ordered[:limit], more

    async def merge_own_recent(self, user_id: str, limit: int) -> None:
        """Read-your-own-writes: the reader's newest posts from post_service join their feed.

        The post.created event may not be consumed yet when the author reads right after
        ``POST /posts``; post_service is the source of truth, so ask it (briefly).
        """
        try:
            recent = await self.posts.recent(
                [user_id], limit, deadline_s=self.settings.own_posts_timeout_s
            )
        except Exception as exc:  # degrade: the event will bring the post shortly
            _log.warning("own_posts_unavailable", error=type(exc).__name__)
            return
        entries = await self.without_tombstones(
            [make_entry(pid, aid, ms) for pid, aid, ms in recent if aid == user_id]
        )
        await self.insert([user_id], entries)

    async def without_tombstones(self, entries: list[Entry]) -> list[Entry]:
        if not entries:
            return entries
        pipe = self._pipeline()
        for member, _score in entries:
            pipe.exists(keys.tombstone(entry_post(member)))
        flags = await pipe.execute()
        return [e for e, dead in zip(entries, flags, strict=True) if not dead]
