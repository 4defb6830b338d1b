"""The feed_service ASGI app: home feeds and notifications, plus the workers when enabled."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from common.app import create_app as create_service_app
from common.errors import problem_response
from common.health import redis_check
from common.logging import get_logger
from common.security import DeletedUsers, JWKSClient, TokenVerifier, deny_list_running
from feed_service.api import feed, notifications
from feed_service.runtime import open_runtime, run_workers
from feed_service.settings import FeedSettings

__all__ = ["create_app"]

_log = get_logger("feed_service.app")


async def _source_failed(_: Request, exc: Exception) -> JSONResponse:
    # post_service or network_service answered 5xx (or 429): a dependency is down, not a bug.
    assert isinstance(exc, httpx.HTTPStatusError)
    status = exc.response.status_code
    if status < 500 and status != 429:
        raise exc
    _log.warning("source_unavailable", status=status, url=str(exc.request.url.path))
    return problem_response(
        503,
        detail="A service the feed depends on is unavailable",
        headers={"Retry-After": "5"},
    )


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
                deny_list = DeletedUsers(
                    runtime.cache.deleted_since,
                    keep_s=settings.deny_list_keep_s,
                    refresh_interval_s=settings.deny_list_refresh_s,
                )
                await stack.enter_async_context(deny_list_running(app.state, deny_list))
                if settings.run_workers:
                    app.state.consumer = await stack.enter_async_context(run_workers(runtime))
                yield
        finally:
            if jwks is not None:
                await jwks.aclose()

    app = create_service_app(
        name="feed_service",
        settings=settings,
        routers=[feed.router, notifications.router],
        lifespan=lifespan,
        description="Home feeds (hybrid fan-out on Redis) and notifications (SSE).",
    )
    app.add_exception_handler(httpx.HTTPStatusError, _source_failed)
    return app
