"""Wiring: the clients and services one feed_service process needs, and its workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from common.internal import internal_headers
from common.messaging import Consumer
from feed_service.events.handlers import CONSUMER, FeedEvents
from feed_service.repository.redis import RedisClient, close_redis, connect_redis
from feed_service.repository.sources import NetworkSource, PostSource, internal_client
from feed_service.service.fanout import FanoutPublisher, FanoutWorker
from feed_service.service.feed_manager import FeedManager
from feed_service.service.notifications import NotificationStore
from feed_service.service.post_cache import PostCache
from feed_service.service.reader import FeedReader
from feed_service.settings import FeedSettings

__all__ = ["FeedRuntime", "open_runtime", "run_workers"]


@dataclass
class FeedRuntime:
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
            reader=FeedReader(feeds, cache),
            fanout=fanout,
            events=FeedEvents(feeds, cache, notifications, fanout),
        )
        try:
            yield runtime
        finally:
            await fanout.close()
            await close_redis(redis)


@contextlib.asynccontextmanager
async def run_workers(runtime: FeedRuntime) -> AsyncIterator[Consumer]:
    """The event consumer and the fan-out workers, for as long as the context is open."""
    settings = runtime.settings
    amqp_url = settings.amqp_url.get_secret_value()
    consumer = Consumer(
        amqp_url,
        service=CONSUMER,
        handlers=runtime.events.handlers(),
        prefetch=settings.event_prefetch,
    )
    runtime.fanout_workers = [
        FanoutWorker(amqp_url, runtime.feeds, prefetch=settings.fanout_prefetch, name=f"fanout-{i}")
        for i in range(settings.fanout_workers)
    ]
    # run_forever retries while RabbitMQ is down, so the API starts regardless.
    tasks = [asyncio.create_task(consumer.run_forever(), name="feed-consumer")] + [
        asyncio.create_task(w.run_forever(), name=w.name) for w in runtime.fanout_workers
    ]
    try:
        yield consumer
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
