"""The root conftest's session fixtures hand out working, isolated resources."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aio_pika
import asyncpg
import httpx
import redis.asyncio

from deploy.local.mailhog import MailHogServer
from deploy.local.postgres import PostgresServer
from deploy.local.rabbitmq import RabbitMQServer
from deploy.local.redis_servers import RedisCluster


async def test_make_database_gives_fresh_databases(
    postgres: PostgresServer, make_database: Callable[[str], Awaitable[str]]
) -> None:
    first, second = await make_database("probe"), await make_database("probe")
    assert first != second
    assert first.startswith("postgresql+asyncpg://")
    connection = await asyncpg.connect(first.replace("+asyncpg", ""))
    try:
        tables = await connection.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert tables == 0
    finally:
        await connection.close()
    assert postgres.dsn().startswith("postgresql://")


async def test_redis_url_answers(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


async def test_make_vhost_isolates(
    rabbitmq: RabbitMQServer, make_vhost: Callable[[str], Awaitable[str]]
) -> None:
    one, two = await make_vhost("iso"), await make_vhost("iso")
    connection = await aio_pika.connect(one)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue("only-in-one", durable=True)
    response = httpx.get(f"{rabbitmq.management_url}/api/queues", auth=("guest", "guest"))
    vhosts = {q["vhost"] for q in response.json() if q["name"] == "only-in-one"}
    assert vhosts == {one.rsplit("/", 1)[1]}
    assert two.rsplit("/", 1)[1] not in vhosts


async def test_mailhog_fixture(mailhog: MailHogServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{mailhog.api_url}/api/v2/messages")
    assert response.status_code == 200
    assert {"total", "count", "start", "items"} <= response.json().keys()


async def test_redis_cluster_fixture(redis_cluster: RedisCluster) -> None:
    assert len(redis_cluster.startup_nodes) == 3
    client = redis.asyncio.RedisCluster.from_url(redis_cluster.url)
    try:
        await client.set("{slot}a", "1")
        assert await client.get("{slot}a") == b"1"
    finally:
        await client.aclose()
