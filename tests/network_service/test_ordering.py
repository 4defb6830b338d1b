"""A follow the client gave up on never commits over a later, acknowledged unfollow (issue 12).

The chaos run saw it: a follow's transaction was still being retried against a restarting
Neo4j after the client's timeout, the client's unfollow was answered meanwhile, and then the
follow committed. Every follow and unfollow is now ordered by its request time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from aio_pika.abc import AbstractQueue
from neo4j import AsyncDriver

from common.events import EventEnvelope
from network_service.service.follows import FollowService
from tests.network_service.conftest import NetworkHarness, make_settings, running_app
from tests.network_service.test_events import BindQueue
from tests.network_service.test_follow_api import follow, follows_count, seed_users
from tests.support.jwt import TokenFactory
from tests.support.tcp_proxy import tcp_proxy

# Long enough for the held follow to be inside its transaction, well below the driver's
# connection timeout (3 s), so the held connection is not given up.
HOLD_S = 1.5


async def collect(queue: AbstractQueue, wait_s: float = 2.0) -> list[EventEnvelope]:
    """Every envelope that arrives within ``wait_s`` (several relay polls)."""
    received: list[EventEnvelope] = []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        message = await queue.get(fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        await message.ack()
        received.append(EventEnvelope.from_json_bytes(message.body))
    return received


def follows_after_last_unfollow(events: list[EventEnvelope]) -> list[EventEnvelope]:
    last_unfollow = max(
        (i for i, e in enumerate(events) if e.type == "user.unfollowed"), default=-1
    )
    return [e for e in events[last_unfollow + 1 :] if e.type == "user.followed"]


async def relationship(net: NetworkHarness, user_id: str, viewer: str) -> dict[str, object]:
    response = await net.client.get(
        f"/api/v1/users/{user_id}/relationship", headers=net.auth(viewer)
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_held_follow_does_not_commit_over_a_later_unfollow(
    network: NetworkHarness,
    graph_driver: AsyncDriver,
    bind_queue: BindQueue,
    neo4j: Any,
    vhost_url: str,
    redis_url: str,
    tokens: TokenFactory,
) -> None:
    """Two instances: the follow goes through one whose Neo4j connection is held (a stalled
    network), the unfollow through the other and is answered; then the follow gets through."""
    await seed_users(graph_driver, "fan", "star")
    queue = await bind_queue("user.followed", "user.unfollowed")
    bolt = urlsplit(neo4j.bolt_uri)
    assert bolt.hostname is not None and bolt.port is not None
    async with tcp_proxy(bolt.hostname, bolt.port) as proxy:
        settings = make_settings(f"bolt://127.0.0.1:{proxy.port}", vhost_url, redis_url)
        async with running_app(settings, tokens) as slow:
            proxy.pause()
            held = asyncio.create_task(
                slow.client.put("/api/v1/me/following/star", headers=slow.auth("fan"))
            )
            await asyncio.sleep(HOLD_S)
            assert not held.done()

            unfollowed = await network.client.delete(
                "/api/v1/me/following/star", headers=network.auth("fan")
            )
            assert unfollowed.status_code == 204, unfollowed.text

            proxy.resume()
            answered = await held
            # Answered as any follow is; it simply was overtaken.
            assert answered.status_code == 204, answered.text

    assert await follows_count(graph_driver, "fan", "star") == 0
    assert await relationship(network, "star", "fan") == {
        "followers_count": 0,
        "following_count": 0,
        "followed_by_me": False,
        "follows_me": False,
    }
    fan = await relationship(network, "fan", "star")
    assert fan["following_count"] == 0
    assert follows_after_last_unfollow(await collect(queue)) == []


async def test_older_request_is_a_no_op_on_an_existing_pair(
    network: NetworkHarness, graph_driver: AsyncDriver, bind_queue: BindQueue
) -> None:
    """Service layer with explicit request times, both directions, with an edge in place."""
    service: FollowService = network.app.state.follow_service
    await seed_users(graph_driver, "fan", "star")
    queue = await bind_queue("user.followed", "user.unfollowed")
    await follow(network, "fan", "star")
    assert [e.type for e in await collect(queue)] == ["user.followed"]

    # A follow accepted before an unfollow, committing after it: no-op, no event.
    early_follow = service.accept()
    await service.unfollow(follower_id="fan", followee_id="star")
    await service.follow(
        follower_id="fan", follower_username="u_fan", followee_id="star", accepted_at=early_follow
    )
    assert await follows_count(graph_driver, "fan", "star") == 0
    events = await collect(queue)
    assert [e.type for e in events] == ["user.unfollowed"]

    # An unfollow accepted before a follow, committing after it: no-op, the edge stays.
    early_unfollow = service.accept()
    await service.follow(follower_id="fan", follower_username="u_fan", followee_id="star")
    await service.unfollow(follower_id="fan", followee_id="star", accepted_at=early_unfollow)
    assert await follows_count(graph_driver, "fan", "star") == 1
    assert [e.type for e in await collect(queue)] == ["user.followed"]
    counts = await relationship(network, "star", "fan")
    assert counts["followers_count"] == 1 and counts["followed_by_me"] is True

    # A later operation still applies, and a repeat of an applied one is answered as before.
    await service.unfollow(follower_id="fan", followee_id="star")
    await service.unfollow(follower_id="fan", followee_id="star")
    assert await follows_count(graph_driver, "fan", "star") == 0
    assert [e.type for e in await collect(queue)] == ["user.unfollowed"]
    counts = await relationship(network, "star", "fan")
    assert counts["followers_count"] == 0 and counts["followed_by_me"] is False
