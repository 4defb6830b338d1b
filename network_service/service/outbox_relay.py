"""Relays Neo4j outbox nodes to RabbitMQ: :class:`common.relay.Relay` on the graph's outbox.

An event is deleted only after the broker confirmed it, so a crash in between publishes it
again (consumers are idempotent); it is never published before its transaction committed,
because uncommitted nodes are invisible to the relay.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from common.failures import dependency_errors
from common.ids import new_id
from common.messaging.publisher import Publisher
from common.relay import PendingEvent, Relay
from network_service.repository import outbox
from network_service.repository.driver import Graph

__all__ = ["Neo4jOutboxRelay", "Neo4jOutboxStore"]

_MAX_BACKOFF_S = 5.0


class _Neo4jClaim:
    """Events claimed (``claimed_by`` this relay until ``claimed_until``) in a committed write."""

    def __init__(self, graph_db: Graph, relay_id: str, events: list[outbox.PendingEvent]) -> None:
        self._graph = graph_db
        self._relay_id = relay_id
        self._claimed = events
        self.events = [PendingEvent(e.id, e.payload, e.aggregate_id) for e in events]

    async def settle(self, published: Sequence[str], deferred: Mapping[str, float]) -> None:
        if published:
            await self._graph.write(
                outbox.delete_events, relay_id=self._relay_id, ids=list(published)
            )
        if deferred:
            now = time.time()
            with contextlib.suppress(*dependency_errors()):
                # Kept claimed until due, so no other relay takes them earlier either.
                await self._graph.write(
                    outbox.defer_events,
                    relay_id=self._relay_id,
                    until={i: int((now + delay) * 1000) for i, delay in deferred.items()},
                )
        settled = set(published) | set(deferred)
        rest = [event.id for event in self._claimed if event.id not in settled]
        if rest:
            # Released at once so the next pass (or another relay) retries them in order; a
            # claim that cannot be released expires after the claim TTL.
            with contextlib.suppress(*dependency_errors()):
                await self._graph.write(outbox.release_claims, relay_id=self._relay_id, ids=rest)


class Neo4jOutboxStore:
    """``(:OutboxEvent)`` nodes as a :class:`common.relay.OutboxStore`.

    Neo4j Community has no notifications: the relay polls, and the service wakes it in-process
    after a commit that wrote an outbox node. Published nodes are deleted, so nothing is kept
    to purge.
    """

    def __init__(self, graph_db: Graph, *, claim_ttl_s: float = 30.0) -> None:
        self._graph = graph_db
        self._claim_ttl_ms = int(claim_ttl_s * 1000)
        self.relay_id = new_id()

    @contextlib.asynccontextmanager
    async def claim(
        self, limit: int, *, exclude_ids: Sequence[str], exclude_aggregates: Sequence[str]
    ) -> AsyncIterator[_Neo4jClaim]:
        # exclude_ids need no filter: a deferred event stays claimed until its retry time.
        now_ms = int(time.time() * 1000)
        claimed = await self._graph.write(
            outbox.claim_batch,
            relay_id=self.relay_id,
            now_ms=now_ms,
            until_ms=now_ms + self._claim_ttl_ms,
            limit=limit,
            exclude_aggregates=list(exclude_aggregates),
        )
        yield _Neo4jClaim(self._graph, self.relay_id, claimed)

    async def watch(self, wake: Callable[[], None]) -> None:
        return None

    async def purge(self) -> int:
        return 0


class Neo4jOutboxRelay(Relay):
    """The relay of network_service's Neo4j outbox; polls every ``poll_interval_s``."""

    def __init__(
        self,
        graph_db: Graph,
        publisher: Publisher,
        *,
        batch_size: int = 200,
        poll_interval_s: float = 0.2,
        claim_ttl_s: float = 30.0,
        unroutable_backoff_s: float = 1.0,
        unroutable_max_backoff_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.store = Neo4jOutboxStore(graph_db, claim_ttl_s=claim_ttl_s)
        super().__init__(
            self.store,
            publisher,
            name="network-outbox-relay",
            batch_size=batch_size,
            poll_interval=poll_interval_s,
            max_backoff=_MAX_BACKOFF_S,
            stop_timeout=stop_timeout_s,
            unroutable_backoff=unroutable_backoff_s,
            unroutable_max_backoff=unroutable_max_backoff_s,
        )

    @property
    def relay_id(self) -> str:
        return self.store.relay_id
