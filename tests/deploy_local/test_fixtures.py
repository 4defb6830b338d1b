"""The root conftest's session fixtures hand out working, isolated resources."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

import aio_pika
import aiosmtplib
import asyncpg
import httpx
import redis.asyncio

from deploy.local.mailpit import MailpitServer
from deploy.local.postgres import PostgresServer
from deploy.local.rabbitmq import RabbitMQServer
from deploy.local.redis_servers import RedisCluster
from tests.support.mailpit import Mailpit


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


async def test_mailpit_fixture_catches_mail_sent_over_smtp(
    mailpit: MailpitServer, inbox: Mailpit
) -> None:
    address = f"r{uuid.uuid4().hex[:12]}@example.org"
    message = EmailMessage()
    message["From"] = "Murmur <murmur@example.org>"
    message["To"] = f"Alice <{address}>"
    message["Subject"] = "Welcome"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@murmur>"
    message.set_content("Confirm: http://127.0.0.1:8080/verify?token=abc")
    message.add_alternative(
        "<p><a href='http://127.0.0.1:8080/verify?token=abc'>Confirm</a></p>", subtype="html"
    )
    await aiosmtplib.send(message, hostname=mailpit.smtp_host, port=mailpit.smtp_port)

    [mail] = await inbox.wait_for(address)
    assert mail.subject == "Welcome"
    assert mail.to == [address]
    assert mail.text.strip() == "Confirm: http://127.0.0.1:8080/verify?token=abc"
    assert "<a href='http://127.0.0.1:8080/verify?token=abc'>" in mail.html
    assert mail.header("message-id") == message["Message-ID"]
    assert (mail.header("Content-Type") or "").startswith("multipart/alternative;")
    # Mailpit's `to:` search matches substrings; the helper keeps exact recipients only.
    assert await inbox.mails_to(address.removeprefix("r")) == []
    assert await inbox.mails_to(address, subject="Other") == []

    await inbox.clear()
    assert await inbox.messages() == []


async def test_redis_cluster_fixture(redis_cluster: RedisCluster) -> None:
    assert len(redis_cluster.startup_nodes) == 3
    client = redis.asyncio.RedisCluster.from_url(redis_cluster.url)
    try:
        await client.set("{slot}a", "1")
        assert await client.get("{slot}a") == b"1"
    finally:
        await client.aclose()
