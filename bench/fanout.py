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
class VisibilityWatcher:
    redis: Any  # redis.asyncio client on feed_service's database
    batch: int  # feed_service's fan-out batch size (FEED_FANOUT_BATCH_SIZE)
    poll_s: float = 0.01
    timeout_s: float = 30.0
    lags: list[Lag] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

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
        task = asyncio.create_task(self._watch(lag, sorted(followers), hybrid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def _watch(self, lag: Lag, followers: list[str], hybrid: bool) -> None:
        member = keys.entry(lag.post_id, lag.author_id)
        if hybrid:
            # Not fanned out: every follower's next read merges the author's post index.
            probes = [(keys.author_posts(lag.author_id), member)]
        else:
            ends = [
                followers[min(start + self.batch, len(followers)) - 1]
                for start in range(0, len(followers), self.batch)
            ]
            probes = [(keys.feed(f), member) for f in ends]
        deadline = lag.created_at + self.timeout_s
        while probes and time.monotonic() < deadline:
            pipe = self.redis.pipeline(transaction=False)
            for key, m in probes:
                pipe.zscore(key, m)
            scores = await pipe.execute()
            now = time.monotonic()
            probes = [p for p, s in zip(probes, scores, strict=True) if s is None]
            if not probes:
                lag.visible_at = now
                break
            await asyncio.sleep(self.poll_s)
        if not hybrid:
            lag.missing = await self._count_missing(followers, member)

    async def _count_missing(self, followers: list[str], member: str) -> int:
        missing = 0
        for start in range(0, len(followers), 5000):
            pipe = self.redis.pipeline(transaction=False)
            for f in followers[start : start + 5000]:
                pipe.zscore(keys.feed(f), member)
            missing += sum(1 for s in await pipe.execute() if s is None)
        return missing
