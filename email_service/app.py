"""The email_service application: health endpoints plus the event consumer that sends mail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import redis.asyncio as redis
from fastapi import FastAPI

from common.app import create_app as create_service_app
from common.health import amqp_check, redis_check
from common.messaging import Consumer
from common.redis_client import connect_redis
from common.sealing import sealer
from email_service.events.handlers import build_handlers
from email_service.repository.store import MailStore
from email_service.service.compose import Composer
from email_service.service.mailer import Mailer
from email_service.service.smtp import SmtpSender
from email_service.settings import EmailSettings

__all__ = ["SERVICE", "build_mailer", "create_app", "run_worker"]

SERVICE = "email"


def build_mailer(settings: EmailSettings, client: redis.Redis) -> Mailer:
    store = MailStore(
        client,
        prefix=settings.key_prefix,
        sent_ttl_s=settings.sent_log_ttl_s,
        lock_ttl_s=settings.send_lock_ttl_s,
        deleted_ttl_s=settings.deleted_user_ttl_s,
    )
    composer = Composer(
        sender=settings.mail_from,
        product_name=settings.product_name,
        message_id_domain=settings.message_id_domain,
    )
    smtp = SmtpSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        use_tls=settings.smtp_use_tls,
        start_tls=settings.smtp_start_tls,
        timeout_s=settings.smtp_timeout_s,
    )
    return Mailer(
        store=store,
        composer=composer,
        smtp=smtp,
        public_base_url=settings.public_base_url,
        record_retry_s=settings.sent_record_retry_s,
    )


def build_consumer(settings: EmailSettings, mailer: Mailer) -> Consumer:
    return Consumer(
        settings.amqp_url.get_secret_value(),
        service=SERVICE,
        handlers=build_handlers(
            mailer, sealer(settings.event_seal_keys), max_age_s=settings.sealed_max_age_s
        ),
        prefetch=settings.consumer_prefetch,
        delivery_limit=settings.delivery_limit,
        retry_delays_ms=settings.retry_delays_ms,
    )


@asynccontextmanager
async def _running_consumer(settings: EmailSettings, mailer: Mailer) -> AsyncIterator[Consumer]:
    consumer = build_consumer(settings, mailer)
    # run_forever retries the connection while RabbitMQ is down instead of failing start-up.
    task = asyncio.create_task(consumer.run_forever(), name="email-consumer")
    try:
        yield consumer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def create_app(settings: EmailSettings | None = None) -> FastAPI:
    settings = settings or EmailSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            client = connect_redis(settings.redis_url)
            stack.push_async_callback(client.aclose)
            mailer = build_mailer(settings, client)
            app.state.mailer = mailer
            app.state.readiness["redis"] = redis_check(client)
            if settings.run_workers:
                # Consuming is this service's whole job: not ready without the broker.
                app.state.readiness["rabbitmq"] = amqp_check(settings.amqp_url.get_secret_value())
                app.state.consumer = await stack.enter_async_context(
                    _running_consumer(settings, mailer)
                )
            yield

    app = create_service_app(
        name="email_service",
        settings=settings,
        routers=[],
        lifespan=lifespan,
        description="Sends account mail (welcome, verification, password reset) from events.",
    )
    return app


async def run_worker(settings: EmailSettings | None = None) -> None:
    """The consumer alone, without HTTP (``python -m email_service worker``)."""
    settings = settings or EmailSettings()
    client = connect_redis(settings.redis_url)
    try:
        async with _running_consumer(settings, build_mailer(settings, client)):
            await asyncio.Event().wait()
    finally:
        await client.aclose()
