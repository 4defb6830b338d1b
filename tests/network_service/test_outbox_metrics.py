"""network_service's outbox age against the real Neo4j."""

from __future__ import annotations

import asyncio

from neo4j import AsyncDriver, AsyncManagedTransaction

from common.events import UserFollowed
from common.metrics_exporters import OUTBOX_AGE, refresh_scraped
from common.time import utcnow
from network_service.repository import outbox
from network_service.repository.driver import Graph
from network_service.service.outbox_metrics import neo4j_outbox_age
from tests.network_service.conftest import NetworkHarness
from tests.support.polling import eventually


async def _age(graph_db: Graph) -> float:
    source = neo4j_outbox_age(graph_db, max_age_s=0.0)
    await refresh_scraped([source], wait_s=10.0)
    (family,) = source.collect()
    assert family.name == OUTBOX_AGE
    return float(family.samples[0].value)


async def test_outbox_age_rises_while_an_event_waits_and_is_zero_once_it_is_gone(
    graph_driver: AsyncDriver,
) -> None:
    graph_db = Graph(graph_driver, "neo4j")
    assert await _age(graph_db) == 0.0

    async def add(tx: AsyncManagedTransaction) -> None:
        payload = UserFollowed(follower_id="a", followee_id="b", followed_at=utcnow())
        await outbox.emit(tx, payload, producer="network", seq=1)

    await graph_db.write(add)  # no relay runs: it waits
    await asyncio.sleep(1.1)
    assert await _age(graph_db) >= 1.0
    await graph_driver.execute_query("MATCH (e:OutboxEvent) DELETE e", database_="neo4j")
    assert await _age(graph_db) == 0.0


async def test_the_network_app_exports_its_outbox_and_queue_gauges(
    network: NetworkHarness,
) -> None:
    expected = (
        "murmur_outbox_oldest_unpublished_age_seconds 0.0",
        'murmur_queue_messages{queue="network.events"} 0.0',
        'murmur_queue_messages{queue="network.events.dead"} 0.0',
        'murmur_queue_oldest_message_age_seconds{queue="network.events"} 0.0',
    )

    async def exported() -> bool:
        # A first refresh slower than the scrape's wait serves the next scrape.
        metrics = await network.client.get("/metrics")
        assert metrics.status_code == 200
        return all(line in metrics.text for line in expected)

    await eventually(exported, what="the outbox and queue gauges", interval=0.5)
