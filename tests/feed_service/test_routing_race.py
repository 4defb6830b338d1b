"""The routing race of issue 12: an event published before its consumer ever started.

user.registered has four consumers. On a fresh deployment auth may publish it while email has
declared its queue and feed has not: the broker routes it to email's queue only (a mandatory
publish is returned only when *no* queue is bound), so feed would never learn of the user.
The relay waits until every consumer's topology is complete, then publishes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aio_pika
import httpx
from asgi_lifespan import LifespanManager

from auth_service.app import create_app as create_auth_app
from common.messaging.topology import declare_topology, queue_name
from tests.auth_service.conftest import (  # the fixtures are used by name below
    auth_database,  # noqa: F401
    auth_settings,  # noqa: F401
    random_ip,
    register,
    signing_factory,  # noqa: F401
)
from tests.feed_service.conftest import FeedHarness
from tests.support.polling import eventually


async def test_a_user_registered_before_feed_service_first_started_reaches_its_replica(
    vhost: str,
    auth_settings: Callable[..., Any],  # noqa: F811
    harness_factory: Any,
) -> None:
    connection = await aio_pika.connect_robust(vhost)
    channel = await connection.channel()
    # email_service is up already; feed, network and post have never started on this broker.
    email = await declare_topology(channel, "email", ["user.registered"])
    settings = auth_settings(
        amqp_url=vhost,
        run_workers=True,
        relay_poll_interval_s=0.2,
        relay_awaits_consumer_queues=True,  # the production default (off in the suite)
    )
    app = create_auth_app(settings)
    try:
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app, client=(random_ip(), 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as c:
                user = await register(c)
            await asyncio.sleep(1.5)  # several relay passes
            # Held back, not half-delivered: email's queue has no copy yet either.
            assert (await channel.declare_queue(queue_name("email"), passive=True)) is not None
            assert await email.get(no_ack=True, fail=False) is None

            # The other consumers start (in any order); feed_service declares its queue.
            await declare_topology(channel, "network", ["user.registered"])
            await declare_topology(channel, "post", ["user.registered"])
            h: FeedHarness = await harness_factory()

            async def replicated() -> bool:
                return bool(await h.redis.exists(f"user:{{u:{user['id']}}}"))

            await eventually(replicated, timeout=30)
            assert await h.redis.hget(f"user:{{u:{user['id']}}}", "username") == user["username"]
            message = await email.get(no_ack=True, fail=False)
            assert message is not None and message.type == "user.registered"
    finally:
        await connection.close()
