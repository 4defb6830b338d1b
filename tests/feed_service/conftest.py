"""feed_service harness: the feed app in-process against real Redis (single node or a
three-node cluster), a RabbitMQ vhost per test, the REAL post_service (PostgreSQL, its outbox
relay publishing into the same vhost) over HTTP, and a small real HTTP server standing in for
network_service's internal read API (its graph is set by the test, which also publishes the
user.followed/unfollowed events network_service would)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, HTTPException
from redis.asyncio import Redis, RedisCluster

from common.events import (
    EventEnvelope,
    EventPayload,
    UserFollowed,
    UserRegistered,
    UserUnfollowed,
    make_envelope,
)
from common.ids import new_id
from common.messaging.publisher import Publisher
from common.time import utcnow
from feed_service.app import FeedRuntime, create_app
from feed_service.settings import FeedSettings
from post_service.app import create_app as create_post_app
from post_service.migrations import upgrade as upgrade_post_db
from post_service.settings import PostSettings
from tests.support.jwt import TokenFactory, User
from tests.support.polling import eventually
from tests.support.server import serve


@dataclass
class Graph:
    """network_service's truth as the stub serves it."""

    follows: dict[str, set[str]] = field(default_factory=dict)  # follower -> followees
    known: set[str] = field(default_factory=set)
    followee_calls: int = 0

    def followers(self, user_id: str) -> list[str]:
        return sorted(f for f, ees in self.follows.items() if user_id in ees)


def commit_to_graph(graph: Graph, envelope: EventEnvelope) -> None:
    """What network_service commits before it relays a follow event (feed_service checks
    the graph when it handles one): for tests delivering graph events by hand."""
    if envelope.type == UserFollowed.event_type:
        followed = UserFollowed.model_validate(envelope.data)
        graph.follows.setdefault(followed.follower_id, set()).add(followed.followee_id)
    elif envelope.type == UserUnfollowed.event_type:
        unfollowed = UserUnfollowed.model_validate(envelope.data)
        graph.follows.setdefault(unfollowed.follower_id, set()).discard(unfollowed.followee_id)


def network_stub(graph: Graph) -> FastAPI:
    app = FastAPI()

    def known(user_id: str) -> None:
        if user_id not in graph.known:
            raise HTTPException(404)

    @app.get("/internal/v1/users/{user_id}/followers")
    async def followers(user_id: str, limit: int = 100, cursor: str | None = None) -> Any:
        known(user_id)
        ids = graph.followers(user_id)
        start = int(cursor or 0)
        page = ids[start : start + limit]
        more = start + limit < len(ids)
        return {"items": page, "next_cursor": str(start + limit) if more else None}

    @app.get("/internal/v1/users/{user_id}/followees")
    async def followees(user_id: str) -> Any:
        known(user_id)
        graph.followee_calls += 1
        return {"items": sorted(graph.follows.get(user_id, set()))}

    @app.get("/internal/v1/users/{user_id}/follower-count")
    async def count(user_id: str) -> Any:
        known(user_id)
        return {"count": len(graph.followers(user_id))}

    return app


@dataclass
class RedisTarget:
    url: str
    cluster: bool

    def client(self) -> Any:
        if self.cluster:
            return RedisCluster.from_url(self.url, decode_responses=True)
        return Redis.from_url(self.url, decode_responses=True)


async def flush(target: RedisTarget) -> None:
    client = target.client()
    try:
        if target.cluster:
            await client.flushall(target_nodes=RedisCluster.PRIMARIES)
        else:
            await client.flushall()
    finally:
        await client.aclose()


class FeedHarness:
    def __init__(
        self,
        *,
        feed: FastAPI,
        client: httpx.AsyncClient,
        post_client: httpx.AsyncClient,
        publisher: Publisher,
        graph: Graph,
        tokens: TokenFactory,
        redis: Any,
        target: RedisTarget,
        settings: FeedSettings,
    ) -> None:
        self.feed = feed
        self.client = client
        self.post_client = post_client
        self.publisher = publisher
        self.graph = graph
        self.tokens = tokens
        self.redis = redis
        self.target = target
        self.settings = settings
        self.url: str | None = None  # set when served over real HTTP

    @property
    def runtime(self) -> FeedRuntime:
        runtime: FeedRuntime = self.feed.state.runtime
        return runtime

    async def publish(self, payload: EventPayload | EventEnvelope) -> EventEnvelope:
        envelope = (
            payload
            if isinstance(payload, EventEnvelope)
            else make_envelope(payload, producer="test")
        )
        await self.publisher.publish(envelope)
        return envelope

    async def user(self, name: str) -> User:
        user_id = new_id()
        username = f"{name}_{user_id[-6:]}"
        self.graph.known.add(user_id)
        await self.publish(
            UserRegistered(
                user_id=user_id,
                username=username,
                display_name=name.title(),
                email=f"{username}@example.com",
            )
        )
        user = User(user_id, username, self.tokens.mint(user_id, username))
        await eventually(lambda: self.redis.exists(f"user:{{u:{user_id}}}"))
        return user

    async def follow(self, follower: User, followee: User) -> None:
        self.graph.follows.setdefault(follower.id, set()).add(followee.id)
        await self.publish(
            UserFollowed(follower_id=follower.id, followee_id=followee.id, followed_at=utcnow())
        )

    async def unfollow(self, follower: User, followee: User) -> None:
        self.graph.follows.setdefault(follower.id, set()).discard(followee.id)
        await self.publish(UserUnfollowed(follower_id=follower.id, followee_id=followee.id))

    async def post(self, user: User, content: str) -> dict[str, Any]:
        response = await self.post_client.post(
            "/api/v1/posts", json={"content": content}, headers=user.auth
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def feed_page(
        self, user: User, *, limit: int = 20, cursor: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self.client.get("/api/v1/me/feed", params=params, headers=user.auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def feed_ids(self, user: User, limit: int = 100) -> list[str]:
        return [p["id"] for p in (await self.feed_page(user, limit=limit))["items"]]

    async def all_pages(self, user: User, limit: int) -> list[list[str]]:
        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            body = await self.feed_page(user, limit=limit, cursor=cursor)
            pages.append([p["id"] for p in body["items"]])
            cursor = body["next_cursor"]
            if cursor is None:
                return pages


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    return TokenFactory()


@pytest.fixture(params=["single", "cluster"])
async def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    if request.param == "single":
        target = RedisTarget(request.getfixturevalue("redis_url"), cluster=False)
    else:
        target = RedisTarget(request.getfixturevalue("redis_cluster").url, cluster=True)
    await flush(target)
    return target


@pytest.fixture
async def post_app_url(
    make_database: Callable[[str], Awaitable[str]],
    make_vhost: Callable[[str], Awaitable[str]],
    tokens: TokenFactory,
    vhost: str,
    redis_url: str,
) -> AsyncIterator[str]:
    database = await make_database("feedpost")
    await asyncio.to_thread(upgrade_post_db, database)
    app = create_post_app(
        PostSettings(
            database_url=database,
            amqp_url=vhost,
            redis_url=redis_url,
            ratelimit_key_prefix=f"test:{uuid.uuid4().hex}",
            environment="test",
            run_workers=True,
            relay_poll_interval_s=0.05,
        )
    )
    app.state.token_verifier = tokens.verifier()
    async with LifespanManager(app, startup_timeout=30), serve(app) as url:
        await eventually(lambda: _consumer_ready(app), timeout=30)
        yield url


async def _consumer_ready(app: FastAPI) -> bool:
    # The service's lifespan puts its consumer on app.state (common.app.Wiring.state).
    consumer = getattr(app.state, "consumer", None)
    return consumer is not None and consumer.connection is not None


@pytest.fixture
async def vhost(make_vhost: Callable[[str], Awaitable[str]]) -> str:
    return await make_vhost("feed")


@pytest.fixture
def graph() -> Graph:
    return Graph()


@pytest.fixture
async def network_url(graph: Graph) -> AsyncIterator[str]:
    async with serve(network_stub(graph)) as url:
        yield url


FeedFactory = Callable[..., Any]


@pytest.fixture
async def feed_settings(
    redis_target: RedisTarget, vhost: str, post_app_url: str, network_url: str, redis_url: str
) -> Callable[..., FeedSettings]:
    def make(**overrides: Any) -> FeedSettings:
        values: dict[str, Any] = {
            "redis_url": redis_target.url,
            "redis_cluster": redis_target.cluster,
            "amqp_url": vhost,
            "post_service_url": post_app_url,
            "network_service_url": network_url,
            # post_app_url's Redis, where post_service marks new posts
            "write_marks_redis_url": redis_url,
            # The production 0.5 s is a latency budget; a loaded test machine misses it and
            # the read degrades to the event path, which tests of the merge cannot tell from
            # a bug.
            "own_posts_timeout_s": 5.0,
            "environment": "test",
            "fanout_workers": 2,
            "inline_fanout_max": 2,
            "fanout_batch_size": 2,
        }
        values.update(overrides)
        return FeedSettings(**values)

    return make


@pytest.fixture
async def harness_factory(
    feed_settings: Callable[..., FeedSettings],
    redis_target: RedisTarget,
    graph: Graph,
    tokens: TokenFactory,
    vhost: str,
    post_app_url: str,
) -> AsyncIterator[Callable[..., Any]]:
    """Opens feed apps (replicas) sharing Redis; closed at the end of the test."""
    stack: list[Any] = []
    publisher = Publisher(vhost, producer="test")
    redis = redis_target.client()
    post_client = httpx.AsyncClient(base_url=post_app_url, timeout=10)

    async def open_harness(*, http: bool = False, **overrides: Any) -> FeedHarness:
        settings = feed_settings(**overrides)
        app = create_app(settings)
        app.state.token_verifier = tokens.verifier()
        manager = LifespanManager(app, startup_timeout=30, shutdown_timeout=30)
        await manager.__aenter__()
        stack.append(manager)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://feed.test"
        )
        stack.append(client)
        if settings.run_workers:
            await eventually(lambda: _feed_workers_ready(app), timeout=30)
        url: str | None = None
        if http:
            server = serve(manager.app)
            url = await server.__aenter__()
            stack.append(server)
        harness = FeedHarness(
            feed=app,
            client=client,
            post_client=post_client,
            publisher=publisher,
            graph=graph,
            tokens=tokens,
            redis=redis,
            target=redis_target,
            settings=settings,
        )
        harness.url = url
        return harness

    try:
        yield open_harness
    finally:
        for item in reversed(stack):
            if isinstance(item, httpx.AsyncClient):
                await item.aclose()
            else:
                await item.__aexit__(None, None, None)
        await publisher.close()
        await post_client.aclose()
        await redis.aclose()


async def _feed_workers_ready(app: FastAPI) -> bool:
    runtime = getattr(app.state, "runtime", None)
    consumer = getattr(app.state, "consumer", None)
    if runtime is None or consumer is None or consumer.connection is None:
        return False
    return all(w.started for w in runtime.fanout_workers)


@pytest.fixture
async def h(harness_factory: Callable[..., Any]) -> FeedHarness:
    harness: FeedHarness = await harness_factory()
    return harness
