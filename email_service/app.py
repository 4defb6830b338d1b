"""The email_service application: health endpoints plus the event consumer that sends mail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import redis.asyncio as redis
from fastapi import FastAPI

from common.app import Role, Wiring
from common.app import create_app as create_service_app
from common.health import amqp_check, redis_check
from common.messaging.consumer import Consumer
from common.metrics_exporters import queue_metrics
from common.redis_client import connect_redis
from common.sealing import sealer
from common.workers import BackgroundTask
from email_service import SERVICE_NAME
from email_service.events.handlers import build_handlers
from email_service.repository.store import MailStore
from email_service.service.compose import Composer
from email_service.service.mailer import Mailer
from email_service.service.smtp import SmtpSender
from email_service.settings import EmailSettings

__all__ = ["build_consumer", "build_mailer", "create_app", "lifespan"]


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
        service=SERVICE_NAME,
        handlers=build_handlers(
            mailer, sealer(settings.event_seal_keys), max_age_s=settings.sealed_max_age_s
        ),
        prefetch=settings.consumer_prefetch,
        delivery_limit=settings.delivery_limit,
        retry_delays_ms=settings.retry_delays_ms,
    )


@asynccontextmanager
async def lifespan(settings: EmailSettings, role: Role) -> AsyncIterator[Wiring]:
    """The mail store on Redis and the mailer; the consumer that sends mail is the worker."""
    async with AsyncExitStack() as stack:
        client = connect_redis(settings.redis_url)
        stack.push_async_callback(client.aclose)
        mailer = build_mailer(settings, client)
        wiring = Wiring(state={"mailer": mailer}, readiness={"redis": redis_check(client)})
        wiring.metrics.append(
            queue_metrics(
                settings.amqp_url.get_secret_value(), SERVICE_NAME, settings.retry_delays_ms
            )
        )
        if role.workers:
            consumer = build_consumer(settings, mailer)
            wiring.state["consumer"] = consumer
            # Consuming is this service's whole job: not ready without the broker.
            wiring.readiness["rabbitmq"] = amqp_check(settings.amqp_url.get_secret_value())
            # run_forever retries the connection while RabbitMQ is down instead of failing
            # start-up.
            wiring.workers["consumer"] = BackgroundTask("email-consumer", consumer.run_forever)
        yield wiring


def create_app(settings: EmailSettings | None = None) -> FastAPI:
    return create_service_app(
        name=f"{SERVICE_NAME}_service",
        settings=settings or EmailSettings(),
        routers=[],
        lifespan=lifespan,
        # No endpoint takes a user's token.
        verify_tokens=False,
        description="Sends account mail (welcome, verification, password reset) from events.",
    )
