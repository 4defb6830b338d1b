"""Through real RabbitMQ: user.* events in via the consumer, post events out via the relay."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import httpx
from asgi_lifespan import LifespanManager

from common.events import EventPayload, UserDeleted, UserRegistered, make_envelope
from common.messaging.publisher import Publisher, UnroutableError
from common.messaging.topology import EXCHANGE
from post_service.app import create_app
from tests.post_service.conftest import make_settings
from tests.support.jwt import TokenFactory

DEADLINE_S = 15.0


async def _publish_when_routable(publisher: Publisher, payload: EventPayload) -> None:
    # The consumer declares and binds post.events at start-up, in the background.
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            await publisher.publish(make_envelope(payload, producer="auth"))
            return
        except UnroutableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _wait_for(check: Callable[[], Awaitable[Any]]) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met before the deadline")


async def _next_event(queue: aio_pika.abc.AbstractQueue, event_type: str) -> dict[str, Any]:
    async def poll() -> dict[str, Any] | None:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            return None
        body: dict[str, Any] = json.loads(message.body)
        return body if body["type"] == event_type else None

    result: dict[str, Any] = await _wait_for(poll)
    return result


async def test_events_flow_through_rabbitmq(
    make_database: Callable[[str], Awaitable[str]],
    make_vhost: Callable[[str], Awaitable[str]],
    tokens: TokenFactory,
    redis_url: str,
) -> None:
    from post_service.migrations import upgrade

    database_url = await make_database("post_mq")
    await asyncio.to_thread(upgrade, database_url)
    amqp_url = await make_vhost("post_mq")

    # A stand-in for feed_service: a queue receiving everything post_service publishes.
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    observed = await channel.declare_queue("test.observer", durable=False, exclusive=True)
    for key in ("post.*", "comment.*"):
        await observed.bind(exchange, key)

    app = create_app(
        make_settings(
            database_url,
            redis_url,
            run_workers=True,
            amqp_url=amqp_url,
            relay_poll_interval_s=0.2,
        )
    )
    app.state.token_verifier = tokens.verifier()
    publisher = Publisher(amqp_url, producer="auth")
    try:
        async with (
            LifespanManager(app) as manager,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app), base_url="http://post.test"
            ) as client,
        ):
            user_id = "0190a000-0000-7000-8000-00000000abcd"
            await _publish_when_routable(
                publisher,
                UserRegistered(
                    user_id=user_id, username="erin", display_name="Erin E", email="e@x.io"
                ),
            )

            async def replica_has_erin() -> bool:
                r = await client.get(f"/api/v1/users/{user_id}/posts")
                return r.status_code == 200

            await _wait_for(replica_has_erin)

            headers = {"Authorization": f"Bearer {tokens.mint(user_id, 'erin')}"}
            r = await client.post("/api/v1/posts", json={"content": "hi #mq"}, headers=headers)
            assert r.status_code == 201
            post = r.json()
            assert post["author"]["display_name"] == "Erin E"

            created = await _next_event(observed, "post.created")
            assert created["data"]["post_id"] == post["id"]
            assert created["data"]["author_display_name"] == "Erin E"
            assert created["producer"] == "post"

            await _publish_when_routable(publisher, UserDeleted(user_id=user_id))
            deleted = await _next_event(observed, "post.deleted")
            assert deleted["data"] == {"post_id": post["id"], "author_id": user_id}
            assert (await client.get(f"/api/v1/posts/{post['id']}")).status_code == 404
    finally:
        await publisher.close()
        await connection.close()
