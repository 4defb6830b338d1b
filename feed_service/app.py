"""The feed_service ASGI app: home feeds and notifications, plus the workers when enabled."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from common.app import Role, Wiring
from common.app import create_app as create_service_app
from common.errors import problem_response
from common.health import redis_check
from common.internal import internal_headers
from common.logging import get_logger
from common.messaging.consumer import Consumer
from common.metrics_exporters import queue_metrics
from common.workers import BackgroundTask
from feed_service import SERVICE_NAME
from feed_service.api import feed, notifications
from feed_service.events.handlers import FeedEvents
from feed_service.repository.redis import RedisClient, close_redis, connect_redis
from feed_service.repository.sources import NetworkSource, PostSource, internal_client
from feed_service.service.fanout import FanoutPublisher, FanoutWorker
from feed_service.service.feed_manager import FeedManager
from feed_service.service.notifications import NotificationStore
from feed_service.service.post_cache import PostCache
from feed_service.service.reader import FeedReader
from feed_service.settings import FeedSettings

__all__ = ["FeedRuntime", "create_app", "lifespan", "open_runtime"]

_log = get_logger("feed_service.app")


@dataclass
class FeedRuntime:
    """The clients and services one feed_service process uses (reconcile uses them too)."""

    settings: FeedSettings
    redis: RedisClient
    feeds: FeedManager
    cache: PostCache
    notifications: NotificationStore
    reader: FeedReader
    fanout: FanoutPublisher
    events: FeedEvents
    fanout_workers: list[FanoutWorker] = field(default_factory=list)


@contextlib.asynccontextmanager
async def open_runtime(settings: FeedSettings) -> AsyncIterator[FeedRuntime]:
    redis = connect_redis(
        settings.redis_url, cluster=settings.redis_cluster, block_ms=settings.sse_block_ms
    )
    marks = (
        None
        if settings.write_marks_redis_url is None
        else connect_redis(settings.write_marks_redis_url)
    )
    timeout_s = settings.internal_timeout_s
    token = internal_headers(settings)
    async with (
        internal_client(settings.post_service_url, timeout_s=timeout_s, headers=token) as post_http,
        internal_client(
            settings.network_service_url, timeout_s=timeout_s, headers=token
        ) as net_http,
    ):
        posts = PostSource(post_http)
        feeds = FeedManager(redis, settings, posts, NetworkSource(net_http))
        cache = PostCache(redis, settings, posts)
        notifications = NotificationStore(redis, settings, cache)
        fanout = FanoutPublisher(
            settings.amqp_url.get_secret_value(), batch_size=settings.fanout_batch_size
        )
        runtime = FeedRuntime(
            settings=settings,
            redis=redis,
            feeds=feeds,
            cache=cache,
            notifications=notifications,
            reader=FeedReader(feeds, cache, marks),
            fanout=fanout,
            events=FeedEvents(feeds, cache, notifications, fanout),
        )
        try:
            yield runtime
        finally:
            await fanout.close()
            await close_redis(redis)
            if marks is not None:
                await close_redis(marks)


@contextlib.asynccontextmanager
async def lifespan(settings: FeedSettings, role: Role) -> AsyncIterator[Wiring]:
    """The runtime (Redis, the post and network clients); the event consumer and the fan-out
    workers."""
    async with open_runtime(settings) as runtime:
        wiring = Wiring(
            state={
                "runtime": runtime,
                "feed_reader": runtime.reader,
                "notifications": runtime.notifications,
            },
            readiness={"redis": redis_check(runtime.redis)},
            deleted_since=runtime.cache.deleted_since,
            metrics=[queue_metrics(settings.amqp_url.get_secret_value(), SERVICE_NAME)],
        )
        if role.workers:
            amqp_url = settings.amqp_url.get_secret_value()
            consumer = Consumer(
                amqp_url,
                service=SERVICE_NAME,
                handlers=runtime.events.handlers(),
                prefetch=settings.event_prefetch,
            )
            wiring.state["consumer"] = consumer
            # run_forever retries while RabbitMQ is down, so the API starts regardless.
            wiring.workers["consumer"] = BackgroundTask("feed-consumer", consumer.run_forever)
            runtime.fanout_workers = [
                FanoutWorker(
                    amqp_url, runtime.feeds, prefetch=settings.fanout_prefetch, name=f"fanout-{i}"
                )
                for i in range(settings.fanout_workers)
            ]
            for worker in runtime.fanout_workers:
                wiring.workers[worker.name] = BackgroundTask(worker.name, worker.run_forever)
        yield wiring


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
    app = create_service_app(
        name=f"{SERVICE_NAME}_service",
        settings=settings or FeedSettings(),
        routers=[feed.router, notifications.router],
        lifespan=lifespan,
        description="Home feeds (hybrid fan-out on Redis) and notifications (SSE).",
    )
    app.add_exception_handler(httpx.HTTPStatusError, _source_failed)
    return app
