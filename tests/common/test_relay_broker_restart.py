"""The PostgreSQL outbox relay after a RabbitMQ restart: what was written meanwhile goes out
within seconds of the broker answering again, whatever back-off the outage built up.

It stops and starts a broker, so it runs against a RabbitMQ node of this module's own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aio_pika
import pytest
import sqlalchemy as sa

from common.db import create_engine
from common.events import consumers_of
from common.messaging.publisher import Publisher
from common.messaging.topology import declare_topology, queue_name
from common.outbox import OutboxRelay, outbox_table, processed_events_table
from deploy.local.rabbitmq import RabbitMQServer
from tests.common.test_outbox import Database
from tests.support.polling import eventually, until

# How soon after the broker is back every event must be out: aio-pika's reconnect interval
# (2 s), the channel's restore and the publishes, with room for a loaded machine; well below
# the 30 s back-off ceiling the outage builds up.
RECOVERY_BOUND_S = 12.0
# Failed passes until the relay's back-off reaches its ceiling (0.5 s doubling to 30 s).
PASSES_TO_CEILING = 7


@pytest.fixture
async def vhost_url(private_rabbitmq: RabbitMQServer) -> str:
    return await asyncio.to_thread(private_rabbitmq.create_vhost, f"relay-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def db(make_database: Callable[[str], Awaitable[str]]) -> AsyncIterator[Database]:
    url = await make_database("relay_restart")
    engine = create_engine(url)
    metadata = sa.MetaData()
    outbox_table(metadata)
    processed_events_table(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield Database(url, engine)
    await engine.dispose()


def _count_claims(relay: OutboxRelay) -> list[int]:
    """How many passes the relay started (each claims a batch), as a one-item list."""
    count = [0]
    claim = relay.store.claim

    def counting(*args: Any, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
        count[0] += 1
        return claim(*args, **kwargs)

    relay.store.claim = counting  # type: ignore[method-assign]
    return count


async def _queued(vhost_url: str, service: str) -> int:
    connection = await aio_pika.connect(vhost_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name(service), passive=True)
        return queue.declaration_result.message_count or 0
    finally:
        await connection.close()


async def test_events_written_while_the_broker_is_down_are_published_soon_after_it_is_back(
    db: Database, vhost_url: str, private_rabbitmq: RabbitMQServer
) -> None:
    # Every consumer's topology, so the relay (as in the services) waits for none of them.
    setup = await aio_pika.connect(vhost_url)
    channel = await setup.channel()
    for service in consumers_of("post.updated"):
        await declare_topology(channel, service, ["post.updated"])
    await setup.close()
    sink = consumers_of("post.updated")[0]

    # The services' settings: default publish timeout, 30 s back-off ceiling, awaited queues.
    publisher = Publisher(vhost_url, producer="post", await_consumer_queues=True)
    relay = OutboxRelay(db.engine, publisher, dsn=db.url, poll_interval=0.5)
    claims = _count_claims(relay)
    await relay.start()
    try:
        await db.add_updates(3)
        await eventually(lambda: _is_zero(db.pending()), "first events published")

        await asyncio.to_thread(private_rabbitmq.stop)
        try:
            first = claims[0]
            written = await db.add_updates(20, aggregates=4, start=3)
            # Each pass claims the events and fails to publish them; the broker comes back
            # once the relay waits 30 s between passes (as after any outage of 30 s or more).
            await until(
                lambda: claims[0] - first >= PASSES_TO_CEILING,
                "the relay backing off to its ceiling",
                timeout=120,
            )
            assert await db.pending() == len(written)
        finally:
            await asyncio.to_thread(private_rabbitmq.start)
        back = time.monotonic()

        await eventually(
            lambda: _is_zero(db.pending()),
            "every event written during the outage published",
            timeout=RECOVERY_BOUND_S,
        )
        took = time.monotonic() - back
        assert await _queued(vhost_url, sink) >= 23, f"published after {took:.1f} s"
    finally:
        await relay.stop()
        await publisher.close()


async def _is_zero(value: Awaitable[int]) -> bool:
    return await value == 0
