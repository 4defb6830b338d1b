"""Fan-out lag: from ``POST /posts`` answering 201 until every follower's feed holds the post.

Visibility is read in feed_service's Redis (the home-feed sorted sets), not through the API:
an entry in the sorted set is what ``GET /me/feed`` returns on the next read, and polling the
API for every follower would load the system more than the workload does. Fan-out writes each
batch of followers (sorted, as feed_service sorts them) in one pipeline on one connection, so
the last follower of a batch holding the post means the whole batch does; a final full check
counts any follower that never got it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from feed_service.repository import keys

__all__ = ["Lag", "VisibilityWatcher"]


@dataclass
class Lag:
    post_id: str
    author_id: str
    followers: int
    created_at: float  # monotonic time the 201 arrived
    visible_at: float | None = None  # monotonic time the last follower's feed held it
    missing: int = 0  # followers whose feed lacked it at the end

    @property
    def lag_s(self) -> float | None:
        return None if self.visible_at is None else self.visible_at - self.created_at


@dataclass
class _Watch:
    lag: Lag
    followers: list[str]
    hybrid: bool
    probes: list[tuple[str, str]]


@dataclass
class VisibilityWatcher:
    """Polls every tracked post in one pipeline per tick (one connection, whatever the load)."""

    redis: Any  # redis.asyncio client on feed_service's database
    batch: int  # feed_service's fan-out batch size (FEED_FANOUT_BATCH_SIZE)
    poll_s: float = 0.01
    timeout_s: float = 30.0
    lags: list[Lag] = field(default_factory=list)
    _pending: list[_Watch] = field(default_factory=list)
    _done: list[_Watch] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def track(
        self,
        post_id: str,
        author_id: str,
        followers: Sequence[str],
        created_at: float,
        *,
        hybrid: bool = False,
    ) -> None:
        lag = Lag(post_id, author_id, len(followers), created_at)
        self.lags.append(lag)
        ordered = sorted(followers)
        member = keys.entry(post_id, author_id)
        if hybrid:
            # Not fanned out: every follower's next read merges the author's post index.
            probes = [(keys.author_posts(author_id), member)]
        else:
            ends = [
                ordered[min(start + self.batch, len(ordered)) - 1]
                for start in range(0, len(ordered), self.batch)
            ]
            probes = [(keys.feed(f), member) for f in ends]
        self._pending.append(_Watch(lag, ordered, hybrid, probes))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())

    async def wait(self) -> None:
        """Until every tracked post is visible or timed out; then count missing deliveries."""
        while self._task is not None and not self._task.done():
            await self._task
        for watch in self._done:
            if not watch.hybrid:
                member = keys.entry(watch.lag.post_id, watch.lag.author_id)
                watch.lag.missing = await self._count_missing(watch.followers, member)
        self._done.clear()

    async def _loop(self) -> None:
        while self._pending:
            watches = list(self._pending)
            pipe = self.redis.pipeline(transaction=False)
            for watch in watches:
                for key, member in watch.probes:
                    pipe.zscore(key, member)
            scores = iter(await pipe.execute())
            now = time.monotonic()
            for watch in watches:
                watch.probes = [p for p in watch.probes if next(scores) is None]
                if not watch.probes:
                    watch.lag.visible_at = now
                if not watch.probes or now > watch.lag.created_at + self.timeout_s:
                    self._pending.remove(watch)
                    self._done.append(watch)
            await asyncio.sleep(self.poll_s)

    async def _count_missing(self, followers: list[str], member: str) -> int:
        missing = 0
        for start in range(0, len(followers), 5000):
            pipe = self.redis.pipeline(transaction=False)
            for f in followers[start : start + 5000]:
                pipe.zscore(keys.feed(f), member)
            missing += sum(1 for s in await pipe.execute() if s is None)
        return missing
