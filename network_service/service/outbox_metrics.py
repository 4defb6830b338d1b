"""The outbox age of network_service's Neo4j outbox, for ``/metrics``."""

from __future__ import annotations

import time

from common.metrics_exporters import ScrapedMetrics, outbox_age_metrics
from network_service.repository import outbox
from network_service.repository.driver import Graph

__all__ = ["neo4j_outbox_age"]


def neo4j_outbox_age(graph_db: Graph, *, max_age_s: float = 5.0) -> ScrapedMetrics:
    """Every ``(:OutboxEvent)`` is unpublished (published ones are deleted)."""

    async def oldest() -> float | None:
        created_ms = await graph_db.read(outbox.oldest_created_ms)
        return None if created_ms is None else time.time() - created_ms / 1000

    return outbox_age_metrics(oldest, max_age_s=max_age_s)
