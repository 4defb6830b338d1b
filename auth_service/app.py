"""The auth_service application: HTTP API plus, optionally, the outbox relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from auth_service import SERVICE_NAME
from auth_service.api import auth, jwks, users
from auth_service.service.keys import KeyRing
from auth_service.service.limits import AuthLimits
from auth_service.service.passwords import PasswordHasher
from auth_service.settings import AuthSettings
from common.app import Role, Wiring
from common.app import create_app as create_service_app
from common.db import create_engine, session_factory
from common.health import postgres_check
from common.messaging.publisher import Publisher
from common.metrics_exporters import postgres_outbox_age
from common.outbox import OutboxRelay
from common.ratelimit import RateLimiter
from common.redis_client import connect_redis
from common.security import KeySource, StaticKeySource

__all__ = ["create_app", "lifespan"]


@asynccontextmanager
async def lifespan(settings: AuthSettings, role: Role) -> AsyncIterator[Wiring]:
    """The database, the login limits and the password hasher (HTTP), the outbox relay."""
    async with AsyncExitStack() as stack:
        wiring = Wiring()
        database_url = settings.database_url.get_secret_value()
        engine = create_engine(database_url)
        stack.push_async_callback(engine.dispose)
        wiring.readiness["postgres"] = postgres_check(engine)
        wiring.metrics.append(postgres_outbox_age(engine))
        if role.http:
            limiter = RateLimiter(settings.redis_url, key_prefix=settings.ratelimit_key_prefix)
            stack.push_async_callback(limiter.close)
            # The known-client markers of the login limits (auth_service.service.limits).
            redis_client = connect_redis(settings.redis_url)
            stack.push_async_callback(redis_client.aclose)
            wiring.state.update(
                engine=engine,
                sessionmaker=session_factory(engine),
                limits=AuthLimits(limiter, settings, redis_client),
                hasher=await asyncio.to_thread(PasswordHasher, settings.bcrypt_rounds),
            )
            # Pinged through the limiter's own pool: the connections requests really use.
            wiring.readiness["redis"] = limiter.ping
        if role.workers:
            publisher = Publisher(
                settings.amqp_url.get_secret_value(),
                producer=SERVICE_NAME,
                await_consumer_queues=settings.relay_awaits_consumer_queues,
            )
            # Closed after the relay has stopped (the workers stop before the lifespan exits).
            stack.push_async_callback(publisher.close)
            wiring.workers["outbox-relay"] = OutboxRelay(
                engine,
                publisher,
                dsn=database_url,
                poll_interval=settings.relay_poll_interval_s,
                retention_s=settings.outbox_retention_s,
                cleanup_interval=settings.outbox_purge_interval_s,
            )
        yield wiring


def _own_keys(app: FastAPI) -> KeySource:
    # auth verifies its own tokens the way every other service does, minus the fetch.
    keys: KeyRing = app.state.keys
    return StaticKeySource(keys.jwks())


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or AuthSettings()
    app = create_service_app(
        name=f"{SERVICE_NAME}_service",
        settings=settings,
        routers=[auth.router, users.router, jwks.router],
        lifespan=lifespan,
        token_keys=_own_keys,
        description="Identity: accounts, credentials, access and refresh tokens.",
    )
    # Built now, not in the lifespan: a production deployment without a key fails to start.
    app.state.keys = KeyRing.from_settings(settings)
    return app
