"""Consumed user events and the Neo4j outbox: what is announced, when, and in which order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractQueue
from neo4j import AsyncDriver

from common.events import UserDeleted, UserRegistered, UserUpdated, make_envelope
from common.messaging.publisher import Publisher
from common.messaging.topology import EXCHANGE
from network_service.repository import outbox
from network_service.repository.driver import Graph
from network_service.service.outbox_relay import Neo4jOutboxRelay
from tests.network_service.conftest import (
    NetworkHarness,
    assert_no_more,
    deliver,
    drain,
    make_settings,
    running_app,
)
from tests.network_service.test_follow_api import follow, follows_count, seed_users
from tests.support.jwt import TokenFactory
from tests.support.polling import eventually

Register = Callable[..., Awaitable[str]]
BindQueue = Callable[..., Awaitable[AbstractQueue]]


async def node(driver: AsyncDriver, user_id: str) -> dict[str, Any] | None:
    records, _, _ = await driver.execute_query(
        "MATCH (u:User {id: $id}) RETURN properties(u) AS p", id=user_id, database_="neo4j"
    )
    return dict(records[0]["p"]) if records else None


async def outbox_size(driver: AsyncDriver) -> int:
    records, _, _ = await driver.execute_query(
        "MATCH (e:OutboxEvent) RETURN count(e) AS n", database_="neo4j"
    )
    return int(records[0]["n"])


# --- user.registered / user.updated ------------------------------------------------------


async def test_user_registered_creates_the_node_with_a_unique_id(
    register: Register, graph_driver: AsyncDriver, auth_publisher: Publisher
) -> None:
    await register("alice", "alice", "Alice A.")
    assert (await node(graph_driver, "alice")) is not None
    stored = await node(graph_driver, "alice")
    assert stored is not None
    assert stored["username"] == "alice" and stored["display_name"] == "Alice A."
    # A redelivery changes nothing and makes no second node.
    await deliver(
        auth_publisher,
        UserRegistered(user_id="alice", username="alice", display_name="Alice A.", email="a@x.io"),
    )
    await register("zed")  # processed after the redelivery (one queue, in order)
    records, _, _ = await graph_driver.execute_query(
        "MATCH (u:User {id: 'alice'}) RETURN count(u) AS n", database_="neo4j"
    )
    assert records[0]["n"] == 1
    constraints, _, _ = await graph_driver.execute_query(
        "SHOW CONSTRAINTS YIELD labelsOrTypes, properties, type", database_="neo4j"
    )
    assert any(
        c["labelsOrTypes"] == ["User"] and c["properties"] == ["id"] and "UNIQUE" in c["type"]
        for c in constraints
    )


async def test_follow_of_a_user_registered_late_succeeds_once_it_arrived(
    network: NetworkHarness, register: Register
) -> None:
    response = await network.client.put(
        "/api/v1/me/following/latecomer", headers=network.auth("early")
    )
    assert response.status_code == 404
    await register("latecomer")
    response = await network.client.put(
        "/api/v1/me/following/latecomer", headers=network.auth("early")
    )
    assert response.status_code == 204
    items = (await network.client.get("/api/v1/users/latecomer/followers")).json()["items"]
    assert [item["id"] for item in items] == ["early"]


async def test_user_updated_renames_everywhere_and_older_events_lose(
    network: NetworkHarness,
    register: Register,
    auth_publisher: Publisher,
    graph_driver: AsyncDriver,
) -> None:
    # The follower node comes from token claims first; its user.registered arrives later.
    await register("bob")
    await follow(network, "carol", "bob")
    old_registered = make_envelope(
        UserRegistered(user_id="carol", username="carol", display_name="Carol", email="c@x.io"),
        producer="auth",
    )
    old_registered = old_registered.model_copy(
        update={"occurred_at": old_registered.occurred_at - timedelta(seconds=1)}
    )
    updated = UserUpdated(user_id="carol", username="carol", display_name="Carol Renamed")
    await deliver(auth_publisher, updated)

    async def renamed() -> bool:
        items = (await network.client.get("/api/v1/users/bob/followers")).json()["items"]
        return bool(items) and items[0]["display_name"] == "Carol Renamed"

    await eventually(renamed, what="user.updated to rename carol")
    # user.registered was emitted before the update but delivered after it: ignored.
    await auth_publisher.publish(old_registered)
    await register("marker")  # the queue is in order: once this is in, the above was handled
    stored = await node(graph_driver, "carol")
    assert stored is not None and stored["display_name"] == "Carol Renamed"


# --- user.deleted ------------------------------------------------------------------------


async def test_user_deleted_removes_node_relationships_and_list_entries(
    network: NetworkHarness,
    register: Register,
    auth_publisher: Publisher,
    graph_driver: AsyncDriver,
    bind_queue: BindQueue,
) -> None:
    for user_id in ("gone", "a", "b"):
        await register(user_id)
    # feed_service is up: the follows are delivered, so the unfollows behind them can be too.
    await bind_queue("user.followed")
    await follow(network, "gone", "a")
    await follow(network, "gone", "b")
    await follow(network, "a", "gone")
    await follow(network, "b", "a")
    queue = await bind_queue("user.unfollowed")

    await deliver(auth_publisher, UserDeleted(user_id="gone"))

    async def deleted() -> bool:
        return await node(graph_driver, "gone") is None

    await eventually(deleted, what="the deleted user's node to disappear")
    records, _, _ = await graph_driver.execute_query(
        "MATCH ()-[r:FOLLOWS]->() RETURN count(r) AS n", database_="neo4j"
    )
    assert records[0]["n"] == 1  # only b -> a is left
    followers_of_a = (await network.client.get("/api/v1/users/a/followers")).json()["items"]
    assert [item["id"] for item in followers_of_a] == ["b"]
    following_of_a = (await network.client.get("/api/v1/users/a/following")).json()["items"]
    assert following_of_a == []
    assert (await network.client.get("/api/v1/users/gone/followers")).status_code == 404
    assert (await network.client.get("/api/v1/users/gone/relationship")).status_code == 404
    counts = (await network.client.get("/api/v1/users/a/relationship")).json()
    assert counts["followers_count"] == 1 and counts["following_count"] == 0

    # The follows the account had made are announced, so feeds can drop it from follower sets.
    events = await drain(queue, 2)
    assert sorted(e.data["followee_id"] for e in events) == ["a", "b"]
    assert {e.data["follower_id"] for e in events} == {"gone"}

    # Neither a late user.registered nor a still-valid token brings the account back.
    await deliver(
        auth_publisher,
        UserRegistered(user_id="gone", username="gone", display_name="Gone", email="g@x.io"),
    )
    await register("after")
    assert await node(graph_driver, "gone") is None
    response = await network.client.put("/api/v1/me/following/a", headers=network.auth("gone"))
    assert response.status_code == 401
    assert await node(graph_driver, "gone") is None
    response = await network.client.put("/api/v1/me/following/gone", headers=network.auth("a"))
    assert response.status_code == 404
    await assert_no_more(queue, wait_s=0.5)


# --- the outbox --------------------------------------------------------------------------


async def test_follow_and_unfollow_are_published_in_order(
    network: NetworkHarness, graph_driver: AsyncDriver, bind_queue: BindQueue
) -> None:
    queue = await bind_queue("user.followed", "user.unfollowed")
    await seed_users(graph_driver, "alice", "bob")
    await follow(network, "alice", "bob")
    await follow(network, "alice", "bob")  # no-op: no second event
    await network.client.delete("/api/v1/me/following/bob", headers=network.auth("alice"))
    await network.client.delete("/api/v1/me/following/bob", headers=network.auth("alice"))
    await follow(network, "alice", "bob")

    events = await drain(queue, 3)
    assert [e.type for e in events] == ["user.followed", "user.unfollowed", "user.followed"]
    assert all(e.producer == "network" for e in events)
    assert events[0].data["follower_id"] == "alice" and events[0].data["followee_id"] == "bob"
    listed = (await network.client.get("/api/v1/users/bob/followers")).json()["items"][0]
    assert events[2].data["followed_at"] == listed["followed_at"]
    assert len({e.id for e in events}) == 3
    await assert_no_more(queue)
    # Published events are removed.
    await eventually(lambda: _outbox_empty(graph_driver), what="the outbox to be emptied")


async def test_a_rolled_back_follow_is_never_announced(
    network: NetworkHarness,
    graph_driver: AsyncDriver,
    bind_queue: BindQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = await bind_queue("user.followed")
    await seed_users(graph_driver, "alice", "bob", "carol")
    real_emit = outbox.emit

    async def add_then_fail(*args: Any, **kwargs: Any) -> None:
        await real_emit(*args, **kwargs)
        raise RuntimeError("crash after the outbox write, before commit")

    monkeypatch.setattr(outbox, "emit", add_then_fail)
    # Like a real server: the client gets the 500 instead of the exception.
    transport = httpx.ASGITransport(app=network.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://network.test") as client:
        response = await client.put("/api/v1/me/following/bob", headers=network.auth("alice"))
    assert response.status_code == 500
    assert "crash" not in response.text
    monkeypatch.setattr(outbox, "emit", real_emit)

    # Rolled back as a whole: neither the relationship nor its event exist.
    assert await follows_count(graph_driver, "alice", "bob") == 0
    assert await outbox_size(graph_driver) == 0
    # The relay is alive and delivers the next follow, and only that one.
    await follow(network, "alice", "carol")
    events = await drain(queue, 1)
    assert events[0].data["followee_id"] == "carol"
    await assert_no_more(queue)


async def test_concurrent_follows_of_one_pair_make_one_relationship_and_one_event(
    network: NetworkHarness, graph_driver: AsyncDriver, bind_queue: BindQueue
) -> None:
    queue = await bind_queue("user.followed")
    await seed_users(graph_driver, "bob")
    headers = network.auth("fan")  # unknown to the graph: its node is MERGEd concurrently too
    responses = await asyncio.gather(
        *(network.client.put("/api/v1/me/following/bob", headers=headers) for _ in range(10))
    )
    assert [r.status_code for r in responses] == [204] * 10
    assert await follows_count(graph_driver, "fan", "bob") == 1
    await drain(queue, 1)
    await assert_no_more(queue)


async def test_events_written_while_rabbitmq_is_down_are_published_when_it_returns(
    network: NetworkHarness, graph_driver: AsyncDriver, vhost_url: str, rabbitmq: Any
) -> None:
    queue_name = f"network-test-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect_robust(vhost_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.bind(exchange, routing_key="user.followed")
        await seed_users(graph_driver, "alice", "bob", "carol")
        await follow(network, "alice", "bob")
        assert [e.data["followee_id"] for e in await drain(queue, 1)] == ["bob"]
    finally:
        await connection.close()
    # The relay deletes an event only after the broker's confirm, which can come after the
    # message is delivered: stopping the broker before that would leave bob's event behind.
    await eventually(lambda: _outbox_empty(graph_driver), what="bob's event to leave the outbox")

    rabbitmq.stop()
    try:
        await follow(network, "alice", "carol")  # the API keeps answering
        assert await outbox_size(graph_driver) == 1
    finally:
        rabbitmq.start()

    connection = await aio_pika.connect_robust(vhost_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True, passive=True)
        events = await drain(queue, 1, timeout=60)
        assert events[0].data["followee_id"] == "carol"
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    # Deleted right after the broker's confirm, so just after the message arrived.
    await eventually(lambda: _outbox_empty(graph_driver), what="the outbox to be emptied")


async def _outbox_empty(driver: AsyncDriver) -> bool:
    return await outbox_size(driver) == 0


async def test_two_relays_publish_each_event_once(
    neo4j: Any,
    graph_driver: AsyncDriver,
    vhost_url: str,
    redis_url: str,
    tokens: TokenFactory,
    bind_queue: BindQueue,
) -> None:
    queue = await bind_queue("user.followed")
    await seed_users(graph_driver, *(f"t{i}" for i in range(40)))
    settings = make_settings(neo4j.bolt_uri, vhost_url, redis_url, run_workers=False)
    async with running_app(settings, tokens) as net:
        for i in range(40):
            await follow(net, f"fan{i % 4}", f"t{i}")
    assert await outbox_size(graph_driver) == 40

    graph_db = Graph(graph_driver, "neo4j")
    publishers = [Publisher(vhost_url, producer="network") for _ in range(2)]
    relays = [Neo4jOutboxRelay(graph_db, p, batch_size=7) for p in publishers]
    try:
        while await outbox_size(graph_driver):
            await asyncio.gather(*(relay.publish_pending() for relay in relays))
    finally:
        for publisher in publishers:
            await publisher.close()
    events = await drain(queue, 40)
    assert len({e.id for e in events}) == 40
    await assert_no_more(queue, wait_s=0.3)
    # Per follower (the aggregate), events arrive in the order they were committed.
    for fan in range(4):
        mine = [
            int(e.data["followee_id"][1:]) for e in events if e.data["follower_id"] == f"fan{fan}"
        ]
        assert mine == sorted(mine)
