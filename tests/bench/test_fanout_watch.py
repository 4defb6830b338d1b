"""The fan-out lag watcher against a real Redis: it sees writes when they happen, counts misses."""

from __future__ import annotations

import asyncio
import time
import uuid

import redis.asyncio as aioredis

from bench.fanout import VisibilityWatcher
from bench.runner import lag_summary
from feed_service.repository import keys


async def test_watcher_measures_fanout_lag_and_missing_feeds(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        run = uuid.uuid4().hex[:8]
        followers = [f"w{run}-{n:04d}" for n in range(25)]
        post_id, author_id = f"p{run}", f"a{run}"
        member = keys.entry(post_id, author_id)
        watcher = VisibilityWatcher(client, batch=10, poll_s=0.005, timeout_s=2.0)

        async def fan_out_later() -> None:
            # Batches of 10 in sorted order, as feed_service writes them; one follower missed.
            await asyncio.sleep(0.2)
            for start in range(0, 25, 10):
                pipe = client.pipeline(transaction=False)
                for follower in sorted(followers)[start : start + 10]:
                    if follower != followers[3]:
                        pipe.zadd(keys.feed(follower), {member: 1})
                await pipe.execute()

        created = time.monotonic()
        writer = asyncio.create_task(fan_out_later())
        watcher.track(post_id, author_id, followers, created)
        await watcher.wait()
        await writer
        (lag,) = watcher.lags
        assert lag.lag_s is not None and 0.2 <= lag.lag_s < 0.6
        assert lag.missing == 1

        # A post that never arrives times out as never visible.
        never = VisibilityWatcher(client, batch=10, poll_s=0.01, timeout_s=0.2)
        never.track(f"q{run}", author_id, followers[:3], time.monotonic())
        await never.wait()
        assert never.lags[0].visible_at is None and never.lags[0].missing == 3

        summary = lag_summary([*watcher.lags, *never.lags])
        assert summary["posts"] == 2 and summary["visible"] == 1 and summary["never_visible"] == 1
        assert summary["deliveries"] == 24 and summary["missing_deliveries"] == 4
        assert summary["within_1s"] == 0.5
    finally:
        await client.aclose()
