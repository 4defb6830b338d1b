"""The network_service application: follow graph in Neo4j, events through a Neo4j outbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from common.app import create_app as create_service_app
from common.errors import dependency_errors
from common.health import amqp_check, neo4j_check
from common.logging import get_logger
from common.messaging import Consumer, Publisher
from common.ratelimit import RateLimiter
from common.security import DeletedUsers, JWKSClient, TokenVerifier, deny_list_running
from network_service.api import internal, public
from network_service.events.handlers import UserEventHandlers
from network_service.repository.driver import Graph, create_driver
from network_service.repository.schema import ensure_schema
from network_service.service.follows import PRODUCER, FollowService
from network_service.service.limits import NetworkLimits
from network_service.service.outbox_relay import Neo4jOutboxRelay
from network_service.settings import NetworkSettings

__all__ = ["SERVICE_NAME", "Workers", "create_app"]

SERVICE_NAME = "network"
_SCHEMA_RETRY_S = 2.0

log = get_logger(__name__)


class Workers:
    """The outbox relay and the user-event consumer, run as background tasks."""

    def __init__(self, settings: NetworkSettings, graph_db: Graph) -> None:
        amqp_url = settings.amqp_url.get_secret_value()
        self.publisher = Publisher(
            amqp_url, producer=PRODUCER, await_consumer_queues=settings.relay_awaits_consumer_queues
        )
        self.relay = Neo4jOutboxRelay(
            graph_db,
            self.publisher,
            batch_size=settings.outbox_batch_size,
            poll_interval_s=settings.outbox_poll_interval_s,
            claim_ttl_s=settings.outbox_claim_ttl_s,
        )
        self.consumer = Consumer(
            amqp_url,
            service=SERVICE_NAME,
            handlers=UserEventHandlers(graph_db, on_event=self.relay.wake).handlers(),
            prefetch=settings.consumer_prefetch,
        )
        self._consumer_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.relay.start()
        self._consumer_task = asyncio.create_task(
            self.consumer.run_forever(), name="network-consumer"
        )

    async def stop(self) -> None:
        task, self._consumer_task = self._consumer_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.relay.stop()
        await self.publisher.close()


async def _ensure_schema_eventually(graph_db: Graph) -> None:
    # The service starts (and reports not-ready) while Neo4j is down; the schema is applied as
    # soon as the database answers.
    while True:
        try:
            await ensure_schema(graph_db.driver, graph_db.database)
            return
        except dependency_errors() as exc:
            log.warning("neo4j_schema_deferred", error=type(exc).__name__)
            await asyncio.sleep(_SCHEMA_RETRY_S)


@contextlib.asynccontextmanager
async def _graph_lifespan(app: FastAPI, settings: NetworkSettings) -> AsyncIterator[Graph]:
    driver = create_driver(settings)
    graph_db = Graph(driver, settings.neo4j_database)
    schema_task = asyncio.create_task(_ensure_schema_eventually(graph_db))
    try:
        # Give a reachable database the chance to be ready before the first request.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(schema_task), timeout=settings.neo4j_startup_wait_s
            )
        yield graph_db
    finally:
        schema_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await schema_task
        await driver.close()


def create_app(settings: NetworkSettings | None = None) -> FastAPI:
    settings = settings or NetworkSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jwks: JWKSClient | None = None
        if getattr(app.state, "token_verifier", None) is None:
            jwks = JWKSClient(settings.jwks_url)
            app.state.token_verifier = TokenVerifier(
                jwks, issuer=settings.jwt_issuer, audience=settings.jwt_audience
            )
        # Fail open: the limits curb abuse, and a follow does not otherwise need Redis, so a
        # Redis outage must not stop following (and Redis is not part of readiness).
        limiter = RateLimiter(
            settings.redis_url, key_prefix=settings.ratelimit_key_prefix, fail_open=True
        )
        app.state.limits = NetworkLimits(limiter, settings)
        async with contextlib.AsyncExitStack() as stack, _graph_lifespan(app, settings) as graph_db:
            stack.push_async_callback(limiter.close)
            workers = Workers(settings, graph_db) if settings.run_workers else None
            app.state.graph = graph_db
            app.state.workers = workers
            app.state.follow_service = FollowService(
                graph_db, on_event=workers.relay.wake if workers else None
            )
            app.state.readiness["neo4j"] = neo4j_check(graph_db.driver)
            app.state.readiness["amqp"] = amqp_check(settings.amqp_url.get_secret_value())
            if workers is not None:
                await workers.start()
            deny_list = DeletedUsers(
                app.state.follow_service.deleted_since,
                keep_s=settings.deny_list_keep_s,
                refresh_interval_s=settings.deny_list_refresh_s,
            )
            try:
                async with deny_list_running(app.state, deny_list):
                    yield
            finally:
                if workers is not None:
                    await workers.stop()
                if jwks is not None:
                    await jwks.aclose()

    return create_service_app(
        name="network_service",
        settings=settings,
        routers=[public.router, internal.router],
        lifespan=lifespan,
        description="Follow graph: follows, followers, suggestions; internal reads for feeds.",
    )
