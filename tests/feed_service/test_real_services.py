"""End to end with the REAL network_service (Neo4j, its outbox relay) and post_service: follows
made through network_service's public API reach the feed as events, and rebuilds after Redis
loses everything read network_service's and post_service's internal APIs."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from neo4j import AsyncGraphDatabase

from network_service.app import create_app as create_network_app
from network_service.settings import NetworkSettings
from tests.feed_service.conftest import FeedHarness, flush
from tests.support.jwt import TokenFactory, User
from tests.support.polling import eventually
from tests.support.server import serve


@pytest.fixture
async def network_service_url(
    neo4j: Any, vhost: str, redis_url: str, tokens: TokenFactory
) -> AsyncIterator[str]:
    driver = AsyncGraphDatabase.driver(neo4j.bolt_uri, auth=None)
    async with driver.session(database="neo4j") as session:
        await (await session.run("MATCH (n) DETACH DELETE n")).consume()
    await driver.close()
    app = create_network_app(
        NetworkSettings(
            environment="test",
            neo4j_uri=neo4j.bolt_uri,
            amqp_url=vhost,
            redis_url=redis_url,
            ratelimit_key_prefix=f"test:{uuid.uuid4().hex}",
            outbox_poll_interval_s=0.05,
        )
    )
    app.state.token_verifier = tokens.verifier()
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30), serve(app) as url:

        async def ready() -> bool:
            consumer = getattr(app.state, "consumer", None)
            return consumer is not None and consumer.connection is not None

        await eventually(ready, timeout=60)
        yield url


async def test_follow_post_flush_unfollow_through_the_real_services(
    harness_factory: Any, network_service_url: str
) -> None:
    h: FeedHarness = await harness_factory(network_service_url=network_service_url)
    async with httpx.AsyncClient(base_url=network_service_url, timeout=10) as network:

        async def known(user: User) -> bool:
            response = await network.get(f"/api/v1/users/{user.id}/relationship")
            return response.status_code == 200

        alice, bob = await h.user("alice"), await h.user("bob")
        for user in (alice, bob):
            await eventually(functools.partial(known, user))
        await h.feed_page(bob)
        response = await network.put(f"/api/v1/me/following/{alice.id}", headers=bob.auth)
        assert response.status_code == 204
        await eventually(lambda: h.redis.sismember(f"followers:{{u:{alice.id}}}", bob.id))

        posts = [await h.post(alice, f"a{n}") for n in range(3)]
        expected = [p["id"] for p in reversed(posts)]

        async def feed_is(ids: list[str]) -> bool:
            return await h.feed_ids(bob) == ids

        await eventually(lambda: feed_is(expected))

        await flush(h.target)
        assert await h.feed_ids(bob) == expected  # rebuilt from network + post internal APIs
        fresh = await h.post(alice, "after the flush")  # follower set reloaded from network
        expected = [fresh["id"], *expected]
        await eventually(lambda: feed_is(expected))

        response = await network.delete(f"/api/v1/me/following/{alice.id}", headers=bob.auth)
        assert response.status_code == 204
        await eventually(lambda: feed_is([]))
