"""The Neo4j relay and events published before their consumer declared its queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractQueue
from neo4j import AsyncDriver

from common.events import (
    EventPayload,
    UserEmailVerified,
    UserFollowed,
    UserUnfollowed,
    UserUpdated,
    consumers_of,
)
from common.messaging.publisher import Publisher
from common.time import utcnow
from network_service.repository import outbox
from network_service.repository.driver import Graph
from network_service.service.outbox_relay import Neo4jOutboxRelay
from tests.network_service.conftest import assert_no_more, drain
from tests.support.polling import eventually

BindQueue = Callable[..., Awaitable[AbstractQueue]]


async def pending_ids(driver: AsyncDriver) -> set[str]:
    records, _, _ = await driver.execute_query(
        "MATCH (e:OutboxEvent) RETURN e.id AS id", database_="neo4j"
    )
    return {r["id"] for r in records}


async def test_events_wait_for_their_consumer_queue_and_block_only_their_aggregate(
    graph_driver: AsyncDriver, vhost_url: str, bind_queue: BindQueue
) -> None:
    assert consumers_of("user.followed") == ("feed",)
    graph = Graph(graph_driver, "neo4j")
    seq = 0

    async def add(payload: EventPayload, aggregate_id: str) -> str:
        nonlocal seq
        seq += 1
        envelope = await graph.write(
            outbox.emit, payload, producer="network", seq=seq, aggregate_id=aggregate_id
        )
        return envelope.id

    followed = [
        await add(
            UserFollowed(follower_id=f"f{i}", followee_id="star", followed_at=utcnow()), f"f{i}"
        )
        for i in range(3)
    ]
    unfollowed = await add(UserUnfollowed(follower_id="f0", followee_id="star"), "f0")
    other = await add(UserUpdated(user_id="x", username="x", display_name="X"), "x")
    unconsumed = await add(UserEmailVerified(user_id="y"), "y")  # nobody consumes it

    updates = await bind_queue("user.updated")  # a consumer of user.updated is up
    publisher = Publisher(vhost_url, producer="network")
    relay = Neo4jOutboxRelay(
        graph,
        publisher,
        batch_size=2,
        poll_interval_s=0.05,
        unroutable_backoff_s=0.2,
        unroutable_max_backoff_s=0.5,
    )
    await relay.start()
    try:
        # Another aggregate flows while the follows wait (small batches: they must not clog them).
        assert [e.id for e in await drain(updates, 1)] == [other]
        await assert_no_more(updates, wait_s=1.0)
        # Kept, not dropped; the unconsumed one is gone.
        assert await pending_ids(graph_driver) == {*followed, unfollowed}
        assert unconsumed not in await pending_ids(graph_driver)

        feed = await bind_queue("user.followed", "user.unfollowed")  # feed_service starts
        events = await drain(feed, 4)
        by_f0 = [e.type for e in events if e.data["follower_id"] == "f0"]
        assert by_f0 == ["user.followed", "user.unfollowed"]  # per-aggregate order kept
        assert sorted(e.id for e in events) == sorted([*followed, unfollowed])
        await assert_no_more(feed, wait_s=0.5)

        async def emptied() -> bool:
            return not await pending_ids(graph_driver)

        await eventually(emptied, what="the outbox to be emptied")
    finally:
        await relay.stop()
        await publisher.close()
