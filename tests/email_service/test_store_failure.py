"""A mail is sent once even when Redis fails right after SMTP accepted it (issue 12)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

import pytest

from common.events import UserRegistered
from common.ids import new_id
from deploy.local.redis_servers import RedisServer
from email_service.settings import EmailSettings
from tests.email_service.conftest import (
    envelope,
    publisher,
    running_email,
    unique_address,
)
from tests.support.mailpit import Mailpit

MakeVhost = Callable[[str], Awaitable[str]]


@pytest.fixture
def redis_url(private_redis: RedisServer) -> str:
    """Overrides the session's Redis: these tests stop their own."""
    return private_redis.url


async def test_redis_down_between_smtp_accept_and_the_sent_log_sends_one_mail(
    make_vhost: MakeVhost,
    email_settings: Callable[..., EmailSettings],
    inbox: Mailpit,
    private_redis: RedisServer,
) -> None:
    amqp = await make_vhost("email")
    address = unique_address()
    event = envelope(
        UserRegistered(user_id=new_id(), username="ada", display_name="Ada", email=address)
    )
    # A short claim: without the fix, the retry after its expiry would send a second mail.
    settings = email_settings(amqp_url=amqp, send_lock_ttl_s=2, retry_delays_ms=[300, 600, 1000])
    restarted: list[asyncio.Task[None]] = []

    async def restart_redis_later() -> None:
        await asyncio.sleep(3)
        await asyncio.to_thread(private_redis.start)

    async with running_email(settings) as app, publisher(amqp) as publish:
        smtp = app.state.mailer.smtp
        send = smtp.send

        async def send_then_lose_redis(message: EmailMessage) -> None:
            await send(message)  # the real SMTP server has accepted it
            if not restarted:
                await asyncio.to_thread(private_redis.stop)
                restarted.append(asyncio.create_task(restart_redis_later()))

        smtp.send = send_then_lose_redis
        await publish(event)
        await inbox.wait_for(address)
        await restarted[0]
        # Longer than the claim's TTL plus every retry delay: a second mail would be here.
        await asyncio.sleep(8)
    mails = await inbox.mails_to(address)
    assert [m.header("Message-ID") for m in mails] == [f"<{event.id}@murmur>"]
