"""feed_service after its broker or its Redis restarts: every consumer back, no read failing.

These tests stop and start servers, so they run against servers of their own (a RabbitMQ node
and a Redis server for this module), never the session's shared ones.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from deploy.local.rabbitmq import GUEST, RabbitMQServer
from deploy.local.redis_servers import RedisServer
from feed_service.service.fanout import FANOUT_QUEUE
from tests.feed_service.conftest import FeedHarness, RedisTarget, flush
from tests.support.jwt import User
from tests.support.polling import eventually


@pytest.fixture
async def vhost(private_rabbitmq: RabbitMQServer) -> str:
    """Overrides the package's fixture: this module's vhosts live on its own broker."""
    name = f"recovery-{uuid.uuid4().hex[:8]}"
    return await asyncio.to_thread(private_rabbitmq.create_vhost, name)


@pytest.fixture
async def redis_target(private_redis: RedisServer) -> RedisTarget:
    """Overrides the package's fixture: a single Redis server this module may restart."""
    target = RedisTarget(private_redis.url, cluster=False)
    await flush(target)
    return target


async def _restart(server: RabbitMQServer | RedisServer) -> None:
    await asyncio.to_thread(server.stop)
    await asyncio.to_thread(server.start)


async def _consumers(broker: RabbitMQServer, vhost_url: str) -> dict[str, int]:
    vhost = vhost_url.rsplit("/", 1)[1]
    async with httpx.AsyncClient(auth=GUEST, timeout=10) as client:
        response = await client.get(f"{broker.management_url}/api/queues/{quote(vhost, safe='')}")
        response.raise_for_status()
        return {q["name"]: int(q.get("consumers", 0)) for q in response.json()}


async def _followed_by(h: FeedHarness, author: User, count: int) -> list[User]:
    followers = [await h.user(f"fan{n}") for n in range(count)]
    for follower in followers:
        await h.feed_page(follower)  # an active feed, so fan-out writes it
        await h.follow(follower, author)
    await eventually(
        lambda: _follower_count(h, author, count),
        timeout=20,
    )
    return followers


async def _follower_count(h: FeedHarness, author: User, count: int) -> bool:
    return int(await h.redis.scard(f"followers:{{u:{author.id}}}")) == count


async def test_every_consumer_is_back_after_a_broker_restart(
    h: FeedHarness, private_rabbitmq: RabbitMQServer, vhost: str
) -> None:
    workers = h.settings.fanout_workers
    expected = {"feed.events": 1, FANOUT_QUEUE: workers}

    async def consuming() -> bool:
        consumers = await _consumers(private_rabbitmq, vhost)
        return all(consumers.get(q, 0) >= n for q, n in expected.items())

    await eventually(consuming, timeout=30)
    alice = await h.user("alice")
    # More followers than inline_fanout_max: the post goes through the fan-out queue.
    followers = await _followed_by(h, alice, h.settings.inline_fanout_max + 2)

    await _restart(private_rabbitmq)

    await eventually(consuming, timeout=60, interval=0.5)
    post = await h.post(alice, "after the broker came back")

    async def fanned_out() -> bool:
        feeds = [await h.feed_ids(f) for f in followers]
        return all(post["id"] in ids for ids in feeds)

    await eventually(fanned_out, timeout=60, interval=0.5)
    consumers = await _consumers(private_rabbitmq, vhost)
    assert consumers[FANOUT_QUEUE] == workers, consumers


async def test_no_read_fails_once_redis_is_back_after_a_restart(
    h: FeedHarness, private_redis: RedisServer
) -> None:
    burst = 16
    alice = await h.user("alice")
    readers = [await h.user(f"reader{n}") for n in range(burst)]
    post = await h.post(alice, "read me after the restart")
    for reader in readers:
        await h.follow(reader, alice)

    async def read(reader: User) -> int:
        response = await h.client.get("/api/v1/me/feed", headers=reader.auth)
        return response.status_code

    async def all_see_it() -> bool:
        feeds = [await h.feed_ids(r) for r in readers]
        return all(post["id"] in ids for ids in feeds)

    await eventually(all_see_it, timeout=30)
    # A concurrent burst holds `burst` pooled connections open.
    assert await asyncio.gather(*(read(r) for r in readers)) == [200] * burst

    await _restart(private_redis)
    ready = await h.client.get("/readyz")
    assert ready.status_code == 200, ready.text

    statuses = await asyncio.gather(*(read(r) for r in readers))
    assert statuses == [200] * burst


async def test_a_like_made_during_a_broker_outage_is_counted_once(
    harness_factory: Any, private_rabbitmq: RabbitMQServer
) -> None:
    # The fallback copy must still be cached when the events arrive, however slow the restart.
    h: FeedHarness = await harness_factory(post_cache_fallback_ttl_s=600)
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    await h.feed_page(alice)
    await h.feed_page(carol)
    await h.follow(carol, alice)
    await eventually(lambda: _follower_count(h, alice, 1))

    await asyncio.to_thread(private_rabbitmq.stop)
    try:
        post = await h.post(alice, "liked while the broker is down")
        liked = await h.post_client.put(f"/api/v1/posts/{post['id']}/like", headers=bob.auth)
        assert liked.status_code == 204, liked.text
        # Read-your-own-writes: the post comes from post_service, with the like counted.
        assert await _like_count(h, alice, post["id"]) == 1
    finally:
        await asyncio.to_thread(private_rabbitmq.start)

    async def events_handled() -> bool:
        # post.created reached carol's feed, and the like reached alice's notifications.
        response = await h.client.get("/api/v1/me/notifications", headers=alice.auth)
        liked = any(n["type"] == "like" for n in response.json()["items"])
        return liked and post["id"] in await h.feed_ids(carol)

    await eventually(events_handled, timeout=120, interval=0.5)
    source = await h.post_client.get(f"/api/v1/posts/{post['id']}", headers=bob.auth)
    assert source.json()["like_count"] == 1
    assert await _like_count(h, alice, post["id"]) == 1
    assert await _like_count(h, carol, post["id"]) == 1
    # Unliking brings every copy to 0, not to 1.
    unliked = await h.post_client.delete(f"/api/v1/posts/{post['id']}/like", headers=bob.auth)
    assert unliked.status_code == 204

    async def unlike_counted() -> bool:
        return await _like_count(h, carol, post["id"]) == 0

    await eventually(unlike_counted, timeout=30)
    assert await _like_count(h, alice, post["id"]) == 0


async def _like_count(h: FeedHarness, user: User, post_id: str) -> int:
    items = (await h.feed_page(user))["items"]
    return int(next(p["like_count"] for p in items if p["id"] == post_id))
