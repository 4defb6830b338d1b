"""Delivery guarantees of email_service: once per event, retries, dead letters, forgetting."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

import aio_pika

from common.events import (
    UserDeleted,
    UserPasswordResetRequested,
    UserRegistered,
    UserVerificationRequested,
)
from common.ids import new_id
from deploy.local.mailpit import MailpitServer
from email_service.service.mailer import VERIFY_EMAIL
from email_service.settings import EmailSettings
from tests.email_service.conftest import (
    PUBLIC_BASE_URL,
    captured_logs,
    envelope,
    publisher,
    running_email,
    running_mailer,
    unique_address,
)
from tests.support.mailpit import Mailpit
from tests.support.polling import until
from tests.support.sealing import sealed
from tests.support.server import free_port

MakeVhost = Callable[[str], Awaitable[str]]


def verification(
    address: str, user_id: str | None = None, token: str | None = None
) -> UserVerificationRequested:
    return UserVerificationRequested(
        user_id=user_id or new_id(),
        username="ada",
        sealed=sealed(address, token or new_id()),
    )


async def test_verification_mail_is_multipart_with_a_stable_message_id(
    make_vhost: MakeVhost, email_settings: Callable[..., EmailSettings], inbox: Mailpit
) -> None:
    amqp = await make_vhost("email")
    address = unique_address()
    token = "tok-" + new_id()
    event = envelope(verification(address, token=token))
    async with running_email(email_settings(amqp_url=amqp)), publisher(amqp) as publish:
        await publish(event)
        [mail] = await inbox.wait_for(address)
    assert mail.header("Message-ID") == f"<{event.id}@murmur>"
    assert mail.header("To") == address
    assert mail.subject == "Verify your email address"
    assert (mail.header("Content-Type") or "").startswith("multipart/alternative;")
    link = f"{PUBLIC_BASE_URL}/api/v1/auth/verify-email?token={token}"
    assert link in mail.text
    assert f'href="{link}"' in mail.html


async def test_the_same_event_twice_sends_one_mail(
    make_vhost: MakeVhost, email_settings: Callable[..., EmailSettings], inbox: Mailpit
) -> None:
    amqp = await make_vhost("email")
    address = unique_address()
    duplicate = envelope(verification(address))
    sentinel = envelope(verification(address))
    # One message at a time, in order: when the sentinel's mail is there, both copies were
    # handled.
    async with (
        running_email(email_settings(amqp_url=amqp, consumer_prefetch=1)),
        publisher(amqp) as publish,
    ):
        await publish(duplicate)
        await publish(duplicate)
        await publish(sentinel)
        await inbox.wait_for(address, count=2)
        await asyncio.sleep(0.5)  # not synchronisation: a late third mail would show up here
    ids = sorted(m.header("Message-ID") or "" for m in await inbox.mails_to(address))
    assert ids == sorted([f"<{duplicate.id}@murmur>", f"<{sentinel.id}@murmur>"])


async def test_concurrent_duplicates_send_one_mail(
    make_vhost: MakeVhost, email_settings: Callable[..., EmailSettings], inbox: Mailpit
) -> None:
    """Two workers handed the same event at once: one sends, the other backs off and skips."""
    amqp = await make_vhost("email")
    address = unique_address()
    event = envelope(verification(address))
    settings = email_settings(amqp_url=amqp, run_workers=False)
    async with running_mailer(settings) as mailer:
        results = await asyncio.gather(
            *(
                mailer.token_mail(
                    VERIFY_EMAIL, event.id, user_id="u", email=address, username="a", token="t"
                )
                for _ in range(5)
            ),
            return_exceptions=True,
        )
        sent = [r for r in results if r is None]
        assert len(sent) >= 1
        await inbox.wait_for(address)
        # The ones that backed off retry later, and then see the sent-log.
        for result in results:
            if result is not None:
                await mailer.token_mail(
                    VERIFY_EMAIL, event.id, user_id="u", email=address, username="a", token="t"
                )
    await asyncio.sleep(0.3)
    assert len(await inbox.mails_to(address)) == 1


async def test_smtp_down_then_up_still_delivers(
    make_vhost: MakeVhost,
    email_settings: Callable[..., EmailSettings],
    mailpit: MailpitServer,
    inbox: Mailpit,
) -> None:
    amqp = await make_vhost("email")
    address = unique_address()
    mailpit.stop()
    try:
        async with running_email(email_settings(amqp_url=amqp)) as app, publisher(amqp) as publish:
            with captured_logs() as logs:
                await publish(envelope(verification(address)))
                # A delivery attempt failed against the stopped server and was scheduled again.
                await until(lambda: logs.seen("event_retry_scheduled"))
            mailpit.start()
            await inbox.wait_for(address)
            assert app.state.consumer.connection is not None
    finally:
        if not _port_open(mailpit.smtp_host, mailpit.smtp_port):
            mailpit.start()


async def test_dead_letters_after_the_delivery_limit_without_leaking_the_token(
    make_vhost: MakeVhost, email_settings: Callable[..., EmailSettings]
) -> None:
    amqp = await make_vhost("email")
    token = "secret-" + new_id()
    closed_port = free_port()
    settings = email_settings(
        amqp_url=amqp, smtp_port=closed_port, delivery_limit=3, retry_delays_ms=[200]
    )
    event = envelope(verification(unique_address(), token=token))
    async with running_email(settings), publisher(amqp) as publish:
        await publish(event)
        message = await wait_for_queue_message(amqp, "email.events.dead", timeout=30)
    headers = message.headers or {}
    error = str(headers.get("x-murmur-error", ""))
    assert "delivery limit" in error and "SMTP unavailable" in error
    assert token not in str(headers)
    assert message.message_id == event.id


async def test_deleted_user_is_forgotten(
    make_vhost: MakeVhost, email_settings: Callable[..., EmailSettings], inbox: Mailpit
) -> None:
    amqp = await make_vhost("email")
    address = unique_address()
    user_id = new_id()
    async with (
        running_email(email_settings(amqp_url=amqp, consumer_prefetch=1)),
        publisher(amqp) as publish,
    ):
        await publish(envelope(UserDeleted(user_id=user_id)))
        await publish(
            envelope(
                UserPasswordResetRequested(
                    user_id=user_id, username="x", sealed=sealed(address, "t")
                )
            )
        )
        # A sentinel for another user proves the queue got past the dropped mail.
        other = unique_address()
        await publish(envelope(verification(other)))
        await inbox.wait_for(other)
    assert await inbox.mails_to(address) == []


async def test_welcome_and_reset_mails(
    make_vhost: MakeVhost, email_settings: Callable[..., EmailSettings], inbox: Mailpit
) -> None:
    amqp = await make_vhost("email")
    address = unique_address()
    user_id = new_id()
    async with running_email(email_settings(amqp_url=amqp)), publisher(amqp) as publish:
        await publish(
            envelope(
                UserRegistered(
                    user_id=user_id, username="ada", display_name="Ada <b>L</b> & co", email=address
                )
            )
        )
        await publish(
            envelope(
                UserPasswordResetRequested(
                    user_id=user_id, username="ada", sealed=sealed(address, "rtok")
                )
            )
        )
        mails = await inbox.wait_for(address, count=2)
    by_subject = {m.subject: m for m in mails}
    welcome = by_subject["Welcome to Murmur"]
    assert "Ada <b>L</b> & co" in welcome.text  # plain text is not escaped
    assert "Ada &lt;b&gt;L&lt;/b&gt; &amp; co" in welcome.html  # HTML is
    reset = by_subject["Reset your password"]
    assert f"{PUBLIC_BASE_URL}/api/v1/auth/password-reset/confirm?token=rtok" in reset.text


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


async def wait_for_queue_message(
    amqp_url: str, queue: str, *, timeout: float = 15.0
) -> aio_pika.abc.AbstractIncomingMessage:
    """Take (and return) one message from ``queue`` once there is one."""
    deadline = time.monotonic() + timeout
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        while True:
            try:
                q = await channel.get_queue(queue, ensure=True)
                message = await q.get(fail=False, no_ack=False)
            except aio_pika.exceptions.ChannelClosed:
                channel = await connection.channel()
                message = None
            if message is not None:
                await message.reject(requeue=True)
                return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no message in {queue}")
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
