"""The network_service application: follow graph in Neo4j, events through a Neo4j outbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from common.app import Role, Wiring
from common.app import create_app as create_service_app
from common.failures import dependency_errors
from common.health import amqp_check, neo4j_check
from common.logging import get_logger
from common.messaging.consumer import Consumer
from common.messaging.publisher import Publisher
from common.metrics_exporters import queue_metrics
from common.ratelimit import RateLimiter
from common.workers import BackgroundTask
from network_service import SERVICE_NAME
from network_service.api import internal, public
from network_service.events.handlers import build_handlers
from network_service.repository.driver import Graph, create_driver
from network_service.repository.schema import ensure_schema
from network_service.service.follows import FollowService
from network_service.service.limits import NetworkLimits
from network_service.service.outbox_metrics import neo4j_outbox_age
from network_service.service.outbox_relay import Neo4jOutboxRelay
from network_service.settings import NetworkSettings

__all__ = ["create_app", "lifespan"]
_SCHEMA_RETRY_S = 2.0

log = get_logger(__name__)


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
async def _graph(settings: NetworkSettings) -> AsyncIterator[Graph]:
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


@contextlib.asynccontextmanager
async def lifespan(settings: NetworkSettings, role: Role) -> AsyncIterator[Wiring]:
    """The graph, the follow rules and rate limits (HTTP), the outbox relay and the consumer."""
    async with contextlib.AsyncExitStack() as stack:
        graph_db = await stack.enter_async_context(_graph(settings))
        amqp_url = settings.amqp_url.get_secret_value()
        relay: Neo4jOutboxRelay | None = None
        wiring = Wiring(
            state={"graph": graph_db},
            readiness={"neo4j": neo4j_check(graph_db.driver), "amqp": amqp_check(amqp_url)},
            metrics=[neo4j_outbox_age(graph_db), queue_metrics(amqp_url, SERVICE_NAME)],
        )
        if role.workers:
            publisher = Publisher(
                amqp_url,
                producer=SERVICE_NAME,
                await_consumer_queues=settings.relay_awaits_consumer_queues,
            )
            stack.push_async_callback(publisher.close)
            relay = Neo4jOutboxRelay(
                graph_db,
                publisher,
                batch_size=settings.outbox_batch_size,
                poll_interval_s=settings.outbox_poll_interval_s,
                claim_ttl_s=settings.outbox_claim_ttl_s,
            )
            consumer = Consumer(
                amqp_url,
                service=SERVICE_NAME,
                handlers=build_handlers(graph_db, on_event=relay.wake),
                prefetch=settings.consumer_prefetch,
            )
            wiring.state["consumer"] = consumer
            wiring.workers["outbox-relay"] = relay
            wiring.workers["consumer"] = BackgroundTask("network-consumer", consumer.run_forever)
        if role.http:
            # Fail open: the limits curb abuse, and a follow does not otherwise need Redis, so
            # a Redis outage must not stop following (and Redis is not part of readiness).
            limiter = RateLimiter(
                settings.redis_url, key_prefix=settings.ratelimit_key_prefix, fail_open=True
            )
            stack.push_async_callback(limiter.close)
            follow_service = FollowService(
                graph_db, on_event=relay.wake if relay is not None else None
            )
            wiring.state.update(
                limits=NetworkLimits(limiter, settings), follow_service=follow_service
            )
            wiring.deleted_since = follow_service.deleted_since
        yield wiring


def create_app(settings: NetworkSettings | None = None) -> FastAPI:
    return create_service_app(
        name=f"{SERVICE_NAME}_service",
        settings=settings or NetworkSettings(),
        routers=[public.router, internal.router],
        lifespan=lifespan,
        description="Follow graph: follows, followers, suggestions; internal reads for feeds.",
    )
