"""The post_service ASGI app: routers, plus the consumer and outbox relay when run_workers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.app import Role, Wiring
from common.app import create_app as create_service_app
from common.db import create_engine, session_factory
from common.health import postgres_check
from common.messaging.consumer import Consumer
from common.messaging.publisher import Publisher
from common.metrics_exporters import postgres_outbox_age, queue_metrics
from common.outbox import OutboxRelay
from common.ratelimit import RateLimiter
from common.redis_client import RedisOptions, connect_redis
from common.security import DeletedUsersLoader
from common.workers import BackgroundTask
from post_service import SERVICE_NAME
from post_service.api import internal, posts
from post_service.events.handlers import build_handlers
from post_service.repository.authors import AuthorRepository
from post_service.service.limits import PostLimits
from post_service.service.write_marks import WriteMarks
from post_service.settings import PostSettings

__all__ = ["create_app", "deleted_since", "lifespan"]


def deleted_since(sessionmaker: async_sessionmaker[AsyncSession]) -> DeletedUsersLoader:
    """Deleted accounts, from the author replica's tombstones."""

    async def load(since: datetime) -> list[tuple[str, datetime]]:
        async with sessionmaker() as session:
            return await AuthorRepository(session).deleted_since(since)

    return load


@contextlib.asynccontextmanager
async def lifespan(settings: PostSettings, role: Role) -> AsyncIterator[Wiring]:
    """The database, the rate limits (HTTP), the user.* consumer and the outbox relay."""
    async with contextlib.AsyncExitStack() as stack:
        engine = create_engine(settings.database_url.get_secret_value())
        stack.push_async_callback(engine.dispose)
        sessionmaker = session_factory(engine)
        wiring = Wiring(
            state={"engine": engine, "sessionmaker": sessionmaker},
            readiness={"postgres": postgres_check(engine)},
            deleted_since=deleted_since(sessionmaker),
            metrics=[
                postgres_outbox_age(engine),
                queue_metrics(settings.amqp_url.get_secret_value(), SERVICE_NAME),
            ],
        )
        if role.http:
            # Fail open: the limits curb abuse, and a write does not otherwise need Redis, so a
            # Redis outage must not stop posting (and Redis is not part of readiness).
            limiter = RateLimiter(
                settings.redis_url, key_prefix=settings.ratelimit_key_prefix, fail_open=True
            )
            stack.push_async_callback(limiter.close)
            wiring.state["limits"] = PostLimits(limiter, settings)
            # Short timeouts and one retry: a mark is worth little time on a post's request.
            marks_redis = connect_redis(
                settings.redis_url,
                decode_responses=True,
                options=RedisOptions(socket_timeout_s=0.5, connect_timeout_s=0.5, retries=1),
            )
            stack.push_async_callback(marks_redis.aclose)
            wiring.state["write_marks"] = WriteMarks(marks_redis, settings.write_mark_ttl_s)
        if role.workers:
            amqp_url = settings.amqp_url.get_secret_value()
            publisher = Publisher(
                amqp_url,
                producer=SERVICE_NAME,
                await_consumer_queues=settings.relay_awaits_consumer_queues,
            )
            stack.push_async_callback(publisher.close)
            consumer = Consumer(
                amqp_url, service=SERVICE_NAME, handlers=build_handlers(sessionmaker)
            )
            wiring.state["consumer"] = consumer
            # run_forever retries while RabbitMQ is down, so the API starts regardless.
            wiring.workers["consumer"] = BackgroundTask("post-consumer", consumer.run_forever)
            wiring.workers["outbox-relay"] = OutboxRelay(
                engine,
                publisher,
                dsn=settings.database_url.get_secret_value(),
                poll_interval=settings.relay_poll_interval_s,
                retention_s=settings.outbox_retention_s,
                # post's consumer records what it applied (common.outbox.mark_processed).
                processed_retention_s=settings.processed_events_retention_s,
                cleanup_interval=settings.outbox_purge_interval_s,
            )
        yield wiring


def create_app(settings: PostSettings | None = None) -> FastAPI:
    return create_service_app(
        name=f"{SERVICE_NAME}_service",
        settings=settings or PostSettings(),
        routers=[posts.router, internal.router],
        lifespan=lifespan,
        description="Posts, likes, comments, hashtags and full-text search.",
    )
