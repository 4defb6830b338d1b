"""The gauges the alert rules read (common.metrics_exporters), against real PostgreSQL,
RabbitMQ, Redis and Neo4j: through an app's ``/metrics`` where the wiring matters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import aio_pika
import httpx
import redis.asyncio as redis
from aio_pika.abc import AbstractRobustConnection
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from common.app import Role, Wiring, create_app
from common.health import ReadinessCheck, redis_check
from common.messaging.topology import DLX, dead_queue_name, declare_topology, queue_name
from common.metrics_exporters import (
    QueueMetrics,
    ScrapedMetrics,
    postgres_outbox_age,
    refresh_scraped,
    service_queues,
)
from common.settings import ServiceSettings
from tests.common.test_app import running
from tests.common.test_outbox import Database, amqp, db, make_relay, vhost_url
from tests.support.polling import eventually
from tests.support.server import free_port
from tests.support.tcp_proxy import tcp_proxy

__all__ = ["amqp", "db", "vhost_url"]  # fixtures shared with test_outbox

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def build(
    readiness: dict[str, ReadinessCheck] | None = None,
    metrics: list[ScrapedMetrics] | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(settings: ServiceSettings, role: Role) -> AsyncIterator[Wiring]:
        yield Wiring(readiness=readiness or {}, metrics=metrics or [])

    return create_app(
        name="metrics-test",
        settings=ServiceSettings(environment="test", readiness_timeout_s=1.0),
        routers=[],
        lifespan=lifespan,
        verify_tokens=False,
    )


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return parse(response.text)


async def read(source: ScrapedMetrics) -> Samples:
    await refresh_scraped([source], wait_s=10.0)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in source.collect()
        for sample in family.samples
    }


READY = ("murmur_ready", ())
OUTBOX = ("murmur_outbox_oldest_unpublished_age_seconds", ())


def queue_key(name: str, queue: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, (("queue", queue),))


async def test_murmur_ready_follows_the_last_readyz(redis_url: str) -> None:
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    async with AsyncExitStack() as redis_path:
        proxy = await redis_path.enter_async_context(tcp_proxy(host, int(port)))
        client_redis = redis.Redis(
            host="127.0.0.1", port=proxy.port, socket_connect_timeout=0.5, socket_timeout=0.5
        )
        app = build(readiness={"redis": redis_check(client_redis)})
        async with running(app) as client:
            assert (await scrape(client))[READY] == 0  # not probed yet
            assert (await client.get("/readyz")).status_code == 200
            assert (await scrape(client))[READY] == 1
            await redis_path.aclose()  # Redis gone: connections cut, new ones refused
            assert (await client.get("/readyz")).status_code == 503
            assert (await scrape(client))[READY] == 0
            await client_redis.aclose()


async def test_outbox_age_rises_while_rows_wait_and_is_zero_once_published(
    db: Database, vhost_url: str, amqp: AbstractRobustConnection
) -> None:
    source = postgres_outbox_age(db.engine, max_age_s=0.0)
    assert (await read(source))[OUTBOX] == 0.0  # empty outbox
    await db.add_updates(2)  # no relay runs: they wait
    first = (await read(source))[OUTBOX]
    await asyncio.sleep(1.1)
    second = (await read(source))[OUTBOX]
    assert 0.0 <= first < second
    assert second >= 1.0

    relay, publisher = make_relay(db, vhost_url)
    await relay.start()
    try:

        async def drained() -> bool:
            return (await read(source))[OUTBOX] == 0.0

        await eventually(drained, what="outbox age back to 0 after the relay published")
    finally:
        await relay.stop()
        await publisher.close()


async def test_outbox_age_through_metrics_and_absent_while_postgres_is_unreachable(
    db: Database,
) -> None:
    await db.add_updates(1)
    async with running(build(metrics=[postgres_outbox_age(db.engine)])) as client:
        assert (await scrape(client))[OUTBOX] >= 0.0
    from common.db import create_engine

    down = create_engine(f"postgresql+asyncpg://murmur@127.0.0.1:{free_port()}/none")
    try:
        async with running(build(metrics=[postgres_outbox_age(down)])) as client:
            started = time.monotonic()
            samples = await scrape(client)
            assert time.monotonic() - started < 2.0
        assert OUTBOX not in samples
    finally:
        await down.dispose()


async def _publish(connection: AbstractRobustConnection, routing_key: str, body: bytes) -> None:
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(DLX) if ".dead" in routing_key else None
    message = aio_pika.Message(body, timestamp=time.time())
    if exchange is None:
        await channel.default_exchange.publish(message, routing_key=routing_key)
    else:
        await exchange.publish(message, routing_key=routing_key)
    await channel.close()


async def test_queue_gauges_count_waiting_and_dead_messages_and_age_them(
    make_vhost: Callable[[str], Awaitable[str]],
) -> None:
    url = await make_vhost("metrics")
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel()
        await declare_topology(channel, "sink", ["post.updated"])
        queues = QueueMetrics(url, [*service_queues("sink"), "missing.events"], max_age_s=0.0)
        main, dead = queue_name("sink"), dead_queue_name("sink")
        samples = await read(queues.metrics)
        assert samples[queue_key("murmur_queue_messages", main)] == 0
        assert samples[queue_key("murmur_queue_oldest_message_age_seconds", main)] == 0
        assert queue_key("murmur_queue_messages", "missing.events") not in samples

        await _publish(connection, main, b"waiting")  # nobody consumes sink.events
        await _publish(connection, dead, b"poison")
        await asyncio.sleep(1.1)
        samples = await read(queues.metrics)
        assert samples[queue_key("murmur_queue_messages", main)] == 1
        assert samples[queue_key("murmur_queue_messages", dead)] == 1
        assert samples[queue_key("murmur_queue_messages", "sink.events.retry.1000")] == 0
        # Seen empty before the publish: the age is bounded by that and is growing.
        assert samples[queue_key("murmur_queue_oldest_message_age_seconds", main)] >= 1.0

        queue = await channel.get_queue(main, ensure=False)
        taken = await queue.get(no_ack=True, fail=True)
        assert taken is not None and taken.body == b"waiting"
        samples = await read(queues.metrics)
        assert samples[queue_key("murmur_queue_messages", main)] == 0
        assert samples[queue_key("murmur_queue_oldest_message_age_seconds", main)] == 0
        assert samples[queue_key("murmur_queue_messages", dead)] == 1
        await queues.close()
    finally:
        await connection.close()


async def test_metrics_answer_fast_without_queue_gauges_while_the_broker_is_down() -> None:
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    queues = QueueMetrics(url, service_queues("sink"))
    async with running(build(metrics=[queues.metrics])) as client:
        started = time.monotonic()
        samples = await scrape(client)
        assert time.monotonic() - started < 2.0
    assert not [key for key in samples if key[0].startswith("murmur_queue")]
