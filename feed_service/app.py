"""The feed_service ASGI app: home feeds and notifications, plus the workers when enabled."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from common.app import create_app as create_service_app
from common.health import redis_check
from common.security import JWKSClient, TokenVerifier
from feed_service.api import feed, notifications
from feed_service.runtime import open_runtime, run_workers
from feed_service.settings import FeedSettings

__all__ = ["create_app"]


def create_app(settings: FeedSettings | None = None) -> FastAPI:
    settings = settings or FeedSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jwks: JWKSClient | None = None
        if getattr(app.state, "token_verifier", None) is None:
            jwks = JWKSClient(settings.jwks_url)
            app.state.token_verifier = TokenVerifier(
                jwks, issuer=settings.jwt_issuer, audience=settings.jwt_audience
            )
        try:
            async with open_runtime(settings) as runtime, contextlib.AsyncExitStack() as stack:
                app.state.runtime = runtime
                app.state.feed_reader = runtime.reader
                app.state.notifications = runtime.notifications
                app.state.readiness["redis"] = redis_check(runtime.redis)
                if settings.run_workers:
                    app.state.consumer = await stack.enter_async_context(run_workers(runtime))
                yield
        finally:
            if jwks is not None:
                await jwks.aclose()

    return create_service_app(
        name="feed_service",
        settings=settings,
        routers=[feed.router, notifications.router],
        lifespan=lifespan,
        description="Home feeds (hybrid fan-out on Redis) and notifications (SSE).",
    )
