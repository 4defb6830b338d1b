"""Fixtures for network_service: the app in-process against the real Neo4j and RabbitMQ."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from neo4j import AsyncDriver, AsyncGraphDatabase

from common.events import EventEnvelope, EventPayload, UserRegistered, make_envelope
from common.messaging.publisher import Publisher, UnroutableError
from common.messaging.topology import EXCHANGE
from network_service.app import create_app
from network_service.settings import NetworkSettings
from tests.support.jwt import TokenFactory
from tests.support.polling import eventually

DEADLINE_S = 10.0


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    return TokenFactory()


async def clear_graph(driver: AsyncDriver) -> None:
    """Delete everything, in batches: relationships first, so no single transaction has to
    detach a 100k-follower node."""
    async with driver.session(database="neo4j") as session:
        for statement in (
            "MATCH ()-[r]->() CALL (r) { DELETE r } IN TRANSACTIONS OF 10000 ROWS",
            "MATCH (n) CALL (n) { DELETE n } IN TRANSACTIONS OF 10000 ROWS",
        ):
            result = await session.run(statement)
            await result.consume()


@pytest.fixture
async def graph_driver(neo4j: Any) -> AsyncIterator[AsyncDriver]:
    """A driver on the shared test Neo4j, emptied first (Community has a single database)."""
    driver = AsyncGraphDatabase.driver(neo4j.bolt_uri, auth=None)
    await clear_graph(driver)
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
async def vhost_url(make_vhost: Callable[[str], Awaitable[str]]) -> str:
    return await make_vhost("network")


def make_settings(
    neo4j_uri: str, amqp_url: str, redis_url: str, **overrides: Any
) -> NetworkSettings:
    values: dict[str, Any] = {
        "environment": "test",
        "neo4j_uri": neo4j_uri,
        "amqp_url": amqp_url,
        "redis_url": redis_url,
        # Fresh rate-limit buckets per app: every in-process client is 127.0.0.1.
        "ratelimit_key_prefix": f"test:{uuid.uuid4().hex}",
        "outbox_poll_interval_s": 0.1,
        **overrides,
    }
    return NetworkSettings(**values)


@dataclass
class NetworkHarness:
    app: FastAPI
    client: httpx.AsyncClient
    tokens: TokenFactory
    amqp_url: str

    def auth(self, user_id: str, username: str | None = None) -> dict[str, str]:
        token = self.tokens.mint(user_id, username or f"u_{user_id}")
        return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def running_app(
    settings: NetworkSettings, tokens: TokenFactory
) -> AsyncIterator[NetworkHarness]:
    app = create_app(settings)
    app.state.token_verifier = tokens.verifier()
    async with (
        LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://network.test"
        ) as client,
    ):
        yield NetworkHarness(app, client, tokens, settings.amqp_url.get_secret_value())


@pytest.fixture
async def network(
    neo4j: Any, graph_driver: AsyncDriver, vhost_url: str, redis_url: str, tokens: TokenFactory
) -> AsyncIterator[NetworkHarness]:
    async with running_app(make_settings(neo4j.bolt_uri, vhost_url, redis_url), tokens) as harness:
        # The consumer declares its queue in the background; events published before that
        # would be unroutable.
        await eventually(_consumer_ready(harness.app), what="network consumer to declare its queue")
        yield harness


def _consumer_ready(app: FastAPI) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return app.state.consumer.connection is not None

    return check


@pytest.fixture
async def auth_publisher(vhost_url: str) -> AsyncIterator[Publisher]:
    """Publishes events as auth_service would."""
    publisher = Publisher(vhost_url, producer="auth")
    await publisher.connect()
    try:
        yield publisher
    finally:
        await publisher.close()


async def deliver(publisher: Publisher, payload: EventPayload) -> EventEnvelope:
    envelope = make_envelope(payload, producer=publisher.producer)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            await publisher.publish(envelope)
            return envelope
        except UnroutableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


@pytest.fixture
def register(
    network: NetworkHarness, auth_publisher: Publisher, graph_driver: AsyncDriver
) -> Callable[..., Awaitable[str]]:
    """Deliver user.registered and wait until the node exists; returns the user id."""

    async def _register(user_id: str, username: str | None = None, display_name: str = "") -> str:
        name = username or f"u_{user_id}"
        await deliver(
            auth_publisher,
            UserRegistered(
                user_id=user_id,
                username=name,
                display_name=display_name or name.title(),
                email=f"{name}@example.org",
            ),
        )

        async def exists() -> bool:
            records, _, _ = await graph_driver.execute_query(
                "MATCH (u:User {id: $id}) RETURN u", id=user_id, database_="neo4j"
            )
            return bool(records)

        await eventually(exists, what=f"user {user_id} to be registered")
        return user_id

    return _register


@pytest.fixture
async def amqp(vhost_url: str) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(vhost_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def bind_queue(amqp: AbstractRobustConnection) -> Callable[..., Awaitable[AbstractQueue]]:
    """A test queue bound to ``murmur.events`` for the given routing keys."""

    async def _bind(*routing_keys: str) -> AbstractQueue:
        channel = await amqp.channel()
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        for key in routing_keys:
            await queue.bind(exchange, routing_key=key)
        return queue

    return _bind


async def drain(
    queue: AbstractQueue, count: int, timeout: float = DEADLINE_S
) -> list[EventEnvelope]:
    """Exactly ``count`` envelopes from ``queue`` (fails if fewer arrive in time)."""
    received: list[EventEnvelope] = []
    deadline = time.monotonic() + timeout
    while len(received) < count:
        message = await queue.get(fail=False)
        if message is None:
            if time.monotonic() > deadline:
                pytest.fail(f"expected {count} events, got {len(received)}: {received}")
            await asyncio.sleep(0.05)
            continue
        await message.ack()
        received.append(EventEnvelope.from_json_bytes(message.body))
    return received


async def assert_no_more(queue: AbstractQueue, wait_s: float = 1.0) -> None:
    """Nothing else arrives within ``wait_s`` (several relay polls)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        message = await queue.get(fail=False)
        if message is not None:
            pytest.fail(f"unexpected event: {message.body!r}")
        await asyncio.sleep(0.05)
