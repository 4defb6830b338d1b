"""The post_service ASGI app: routers, plus the consumer and outbox relay when run_workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.app import create_app as create_service_app
from common.db import create_engine, session_factory
from common.health import postgres_check
from common.messaging import Consumer, Publisher
from common.outbox import OutboxRelay
from common.ratelimit import RateLimiter
from common.security import DeletedUsers, JWKSClient, TokenVerifier, deny_list_running
from post_service.api import internal, posts
from post_service.events.handlers import CONSUMER, make_handlers
from post_service.events.outbox import PRODUCER
from post_service.repository.authors import AuthorRepository
from post_service.service.limits import PostLimits
from post_service.settings import PostSettings

__all__ = ["Workers", "create_app", "deny_list", "run_workers"]


@dataclass(frozen=True)
class Workers:
    relay: OutboxRelay
    consumer: Consumer


@contextlib.asynccontextmanager
async def run_workers(
    settings: PostSettings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Workers]:
    """The user.* consumer and the outbox relay, for as long as the context is open."""
    amqp_url = settings.amqp_url.get_secret_value()
    publisher = Publisher(
        amqp_url, producer=PRODUCER, await_consumer_queues=settings.relay_awaits_consumer_queues
    )
    relay = OutboxRelay(
        engine,
        publisher,
        dsn=settings.database_url.get_secret_value(),
        poll_interval=settings.relay_poll_interval_s,
    )
    consumer = Consumer(amqp_url, service=CONSUMER, handlers=make_handlers(sessionmaker))
    # run_forever retries while RabbitMQ is down, so the API starts regardless.
    consumer_task = asyncio.create_task(consumer.run_forever(), name="post-consumer")
    await relay.start()
    try:
        yield Workers(relay, consumer)
    finally:
        await relay.stop()
        consumer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer_task
        await publisher.close()


def deny_list(
    settings: PostSettings, sessionmaker: async_sessionmaker[AsyncSession]
) -> DeletedUsers:
    """Deleted accounts, from the author replica's tombstones."""

    async def load(since: datetime) -> list[tuple[str, datetime]]:
        async with sessionmaker() as session:
            return await AuthorRepository(session).deleted_since(since)

    return DeletedUsers(
        load, keep_s=settings.deny_list_keep_s, refresh_interval_s=settings.deny_list_refresh_s
    )


def create_app(settings: PostSettings | None = None) -> FastAPI:
    settings = settings or PostSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url.get_secret_value())
        app.state.engine = engine
        app.state.sessionmaker = session_factory(engine)
        app.state.readiness["postgres"] = postgres_check(engine)
        # Fail open: the limits curb abuse, and a write does not otherwise need Redis, so a
        # Redis outage must not stop posting (and Redis is not part of readiness).
        limiter = RateLimiter(
            settings.redis_url, key_prefix=settings.ratelimit_key_prefix, fail_open=True
        )
        app.state.limits = PostLimits(limiter, settings)
        jwks: JWKSClient | None = None
        if getattr(app.state, "token_verifier", None) is None:
            jwks = JWKSClient(settings.jwks_url)
            app.state.token_verifier = TokenVerifier(
                jwks, issuer=settings.jwt_issuer, audience=settings.jwt_audience
            )
        try:
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(
                    deny_list_running(app.state, deny_list(settings, app.state.sessionmaker))
                )
                if settings.run_workers:
                    app.state.workers = await stack.enter_async_context(
                        run_workers(settings, engine, app.state.sessionmaker)
                    )
                yield
        finally:
            if jwks is not None:
                await jwks.aclose()
            await limiter.close()
            await engine.dispose()

    return create_service_app(
        name="post_service",
        settings=settings,
        routers=[posts.router, internal.router],
        lifespan=lifespan,
        description="Posts, likes, comments, hashtags and full-text search.",
    )
