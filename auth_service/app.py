"""The auth_service application: HTTP API plus, optionally, the outbox relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from auth_service.api import auth, jwks, users
from auth_service.service.keys import KeyRing
from auth_service.service.limits import AuthLimits
from auth_service.service.passwords import PasswordHasher
from auth_service.settings import AuthSettings
from common.app import create_app as create_service_app
from common.db import create_engine, session_factory
from common.health import postgres_check
from common.messaging import Publisher
from common.outbox import OutboxRelay
from common.ratelimit import RateLimiter
from common.redis_client import connect_redis
from common.security import StaticKeySource, TokenVerifier

__all__ = ["create_app", "run_worker"]

SERVICE = "auth"


@asynccontextmanager
async def _outbox_relay(settings: AuthSettings, engine_url: str) -> AsyncIterator[OutboxRelay]:
    engine = create_engine(engine_url)
    publisher = Publisher(
        settings.amqp_url.get_secret_value(),
        producer=SERVICE,
        await_consumer_queues=settings.relay_awaits_consumer_queues,
    )
    relay = OutboxRelay(
        engine,
        publisher,
        dsn=engine_url,
        poll_interval=settings.relay_poll_interval_s,
    )
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()
        await publisher.close()
        await engine.dispose()


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or AuthSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            database_url = settings.database_url.get_secret_value()
            engine = create_engine(database_url)
            stack.push_async_callback(engine.dispose)
            app.state.engine = engine
            app.state.sessionmaker = session_factory(engine)

            limiter = RateLimiter(settings.redis_url, key_prefix=settings.ratelimit_key_prefix)
            stack.push_async_callback(limiter.close)
            # The known-client markers of the login limits (auth_service.service.limits).
            redis_client = connect_redis(settings.redis_url)
            stack.push_async_callback(redis_client.aclose)
            app.state.limits = AuthLimits(limiter, settings, redis_client)

            app.state.hasher = await asyncio.to_thread(PasswordHasher, settings.bcrypt_rounds)
            if getattr(app.state, "token_verifier", None) is None:
                # auth verifies its own tokens the way every other service does, minus the fetch.
                app.state.token_verifier = TokenVerifier(
                    StaticKeySource(app.state.keys.jwks()),
                    issuer=settings.jwt_issuer,
                    audience=settings.jwt_audience,
                )

            app.state.readiness["postgres"] = postgres_check(engine)
            # Pinged through the limiter's own pool: the connections requests really use.
            app.state.readiness["redis"] = limiter.ping
            if settings.run_workers:
                await stack.enter_async_context(_outbox_relay(settings, database_url))
            yield

    app = create_service_app(
        name="auth_service",
        settings=settings,
        routers=[auth.router, users.router, jwks.router],
        lifespan=lifespan,
        description="Identity: accounts, credentials, access and refresh tokens.",
    )
    # Built now, not in the lifespan: a production deployment without a key fails to start.
    app.state.keys = KeyRing.from_settings(settings)
    return app


async def run_worker(settings: AuthSettings | None = None) -> None:
    """The outbox relay alone, without HTTP (``python -m auth_service worker``)."""
    settings = settings or AuthSettings()
    async with _outbox_relay(settings, settings.database_url.get_secret_value()):
        await asyncio.Event().wait()
