"""A post to 100,000 followers: spread over two competing fan-out workers, and the hybrid path.

Prints the measured fan-out rate and time-to-visible (see the feed_service report).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from common.events import PostCreated, UserRegistered, make_envelope
from common.ids import new_id
from common.time import utcnow
from feed_service.service.fanout import FanoutWorker
from tests.feed_service.conftest import FeedHarness
from tests.support.jwt import User
from tests.support.polling import eventually

FOLLOWERS = 100_000
INACTIVE_EVERY = 10  # every 10th follower has no built feed (idle): fan-out must skip it
pytestmark = pytest.mark.slow


async def _populate(h: FeedHarness, author: str, followers: list[str]) -> None:
    redis = h.redis
    for start in range(0, len(followers), 10_000):
        await redis.sadd(f"followers:{{u:{author}}}", *followers[start : start + 10_000])
    await redis.set(f"followersmeta:{{u:{author}}}", "1")
    for start in range(0, len(followers), 5_000):
        pipe = redis.pipeline(transaction=False)
        for n, follower in enumerate(followers[start : start + 5_000], start):
            if n % INACTIVE_EVERY:
                pipe.hset(f"feedmeta:{{u:{follower}}}", "built_at", 1)
                pipe.pexpire(f"feedmeta:{{u:{follower}}}", 3_600_000)
        await pipe.execute()


async def _missing(h: FeedHarness, followers: list[str], member: str) -> tuple[int, int]:
    """(active feeds without the post, inactive feeds that were written anyway)."""
    missing = written_inactive = 0
    for start in range(0, len(followers), 5_000):
        pipe = h.redis.pipeline(transaction=False)
        chunk = followers[start : start + 5_000]
        for follower in chunk:
            pipe.zscore(f"feed:{{u:{follower}}}", member)
        scores = await pipe.execute()
        for n, score in enumerate(scores, start):
            if n % INACTIVE_EVERY and score is None:
                missing += 1
            if not n % INACTIVE_EVERY and score is not None:
                written_inactive += 1
    return missing, written_inactive


async def _setup(harness_factory: Any, **overrides: Any) -> tuple[FeedHarness, str, list[str]]:
    h: FeedHarness = await harness_factory(
        run_workers=False, fanout_batch_size=1000, inline_fanout_max=1000, **overrides
    )
    author = new_id()
    await h.runtime.events.handlers().handle(
        make_envelope(
            UserRegistered(user_id=author, username="celebrity", display_name="C", email="c@x.org"),
            producer="test",
        )
    )
    followers = [f"{n:06d}-{new_id()}" for n in range(FOLLOWERS)]
    await _populate(h, author, followers)
    return h, author, followers


def _post(author: str) -> Any:
    return make_envelope(
        PostCreated(post_id=new_id(), author_id=author, content="to everyone", created_at=utcnow()),
        producer="post",
    )


async def test_100k_follower_fan_out_is_shared_by_two_workers(harness_factory: Any) -> None:
    h, author, followers = await _setup(harness_factory, hybrid_threshold=1_000_000)
    amqp = h.settings.amqp_url.get_secret_value()
    workers = [FanoutWorker(amqp, h.runtime.feeds, prefetch=2, name=f"w{i}") for i in range(2)]
    for worker in workers:
        await worker.start()
    try:
        envelope = _post(author)
        member = f"{envelope.data['post_id']}:{author}"
        started = time.perf_counter()
        await h.runtime.events.handlers().handle(envelope)
        published = time.perf_counter()

        active = FOLLOWERS - FOLLOWERS // INACTIVE_EVERY

        async def done() -> bool:
            # A batch may be redelivered (at-least-once) and written twice, harmlessly.
            return sum(w.deliveries for w in workers) >= active

        await eventually(done, timeout=240, interval=0.01)
        finished = time.perf_counter()
    finally:
        for worker in workers:
            await worker.stop()
    assert all(w.batches > 0 for w in workers), [w.batches for w in workers]
    assert sum(w.batches for w in workers) >= FOLLOWERS // 1000
    assert await _missing(h, followers, member) == (0, 0)
    elapsed = finished - started
    print(
        "\nFANOUT_METRICS "
        + json.dumps(
            {
                "mode": "fan-out",
                "redis": "cluster" if h.target.cluster else "single",
                "followers": FOLLOWERS,
                "deliveries": active,
                "batches_per_worker": [w.batches for w in workers],
                "publish_s": round(published - started, 3),
                "time_to_visible_s": round(elapsed, 3),
                "deliveries_per_s": round(active / elapsed),
            }
        )
    )


async def test_100k_follower_post_with_hybrid_path(harness_factory: Any) -> None:
    h, author, followers = await _setup(harness_factory, hybrid_threshold=50_000)
    reader_id = followers[1]
    await h.redis.sadd(f"following:{{u:{reader_id}}}", author)
    await h.redis.set(f"likedmeta:{{u:{reader_id}}}", "1")
    reader = User(reader_id, "reader", h.tokens.mint(reader_id, "reader"))
    envelope = _post(author)
    started = time.perf_counter()
    await h.runtime.events.handlers().handle(envelope)
    handled = time.perf_counter()
    assert await h.feed_ids(reader) == [envelope.data["post_id"]]
    visible = time.perf_counter()
    # Nothing was fanned out: the post is merged at read time.
    assert await h.redis.zcard(f"feed:{{u:{followers[2]}}}") == 0
    assert await h.redis.sismember("bigauthors", author)
    print(
        "\nFANOUT_METRICS "
        + json.dumps(
            {
                "mode": "hybrid",
                "redis": "cluster" if h.target.cluster else "single",
                "followers": FOLLOWERS,
                "handler_s": round(handled - started, 4),
                "time_to_visible_s": round(visible - started, 4),
            }
        )
    )
    await asyncio.sleep(0)
