"""feed_service after its broker or its Redis restarts: every consumer back, no read failing.

These tests stop and start servers, so they run against servers of their own (a RabbitMQ node
and a Redis server for this module), never the session's shared ones.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from deploy.local.process import free_port
from deploy.local.rabbitmq import GUEST, RabbitMQServer
from deploy.local.redis_servers import RedisServer
from feed_service.service.fanout import FANOUT_QUEUE
from tests.conftest import _Servers
from tests.feed_service.conftest import FeedHarness, RedisTarget, User, eventually, flush


@pytest.fixture(scope="module")
def own_rabbitmq(_servers: _Servers) -> Iterator[RabbitMQServer]:
    server = RabbitMQServer(
        _servers.dir("rabbitmq-recovery"),
        free_port(),
        free_port(),
        dist_port=free_port(),
        epmd_port=free_port(),
    )
    _servers.start(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_redis(_servers: _Servers) -> Iterator[RedisServer]:
    server = _servers.start(RedisServer(_servers.dir("redis-recovery"), free_port()))
    yield server
    server.stop()


@pytest.fixture
async def vhost(own_rabbitmq: RabbitMQServer) -> str:
    """Overrides the package's fixture: this module's vhosts live on its own broker."""
    name = f"recovery-{uuid.uuid4().hex[:8]}"
    return await asyncio.to_thread(own_rabbitmq.create_vhost, name)


@pytest.fixture
async def redis_target(own_redis: RedisServer) -> RedisTarget:
    """Overrides the package's fixture: a single Redis server this module may restart."""
    target = RedisTarget(own_redis.url, cluster=False)
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
    h: FeedHarness, own_rabbitmq: RabbitMQServer, vhost: str
) -> None:
    workers = h.settings.fanout_workers
    expected = {"feed.events": 1, FANOUT_QUEUE: workers}

    async def consuming() -> bool:
        consumers = await _consumers(own_rabbitmq, vhost)
        return all(consumers.get(q, 0) >= n for q, n in expected.items())

    await eventually(consuming, timeout=30)
    alice = await h.user("alice")
    # More followers than inline_fanout_max: the post goes through the fan-out queue.
    followers = await _followed_by(h, alice, h.settings.inline_fanout_max + 2)

    await _restart(own_rabbitmq)

    await eventually(consuming, timeout=60, interval=0.5)
    post = await h.post(alice, "after the broker came back")

    async def fanned_out() -> bool:
        feeds = [await h.feed_ids(f) for f in followers]
        return all(post["id"] in ids for ids in feeds)

    await eventually(fanned_out, timeout=60, interval=0.5)
    consumers = await _consumers(own_rabbitmq, vhost)
    assert consumers[FANOUT_QUEUE] == workers, consumers
