"""The transactional outbox in Neo4j: ``(:OutboxEvent)`` nodes written with the change.

``(:OutboxEvent {id, type, payload, created_at, aggregate_id, seq, claimed_by, claimed_until})``:
``payload`` is the JSON envelope, ``seq`` the per-aggregate order (the follower's
``event_seq``), ``created_at`` ms since the epoch. A relay claims nodes, publishes them and
deletes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from neo4j import AsyncManagedTransaction

from common.events import EventEnvelope, EventPayload, make_envelope
from common.time import to_ms

__all__ = [
    "PendingEvent",
    "claim_batch",
    "defer_events",
    "delete_events",
    "emit",
    "oldest_created_ms",
    "release_claims",
]


@dataclass(frozen=True, slots=True)
class PendingEvent:
    id: str
    payload: str
    aggregate_id: str | None = None


async def emit(
    tx: AsyncManagedTransaction,
    payload: EventPayload,
    *,
    producer: str,
    seq: int,
    aggregate_id: str | None = None,
    correlation_id: str | None = None,
) -> EventEnvelope:
    """Add an event to the outbox inside the caller's transaction (``common.outbox.emit``'s
    Neo4j twin); ``seq`` is its place in the aggregate's order, ``aggregate_id`` defaults to
    the payload's own."""
    envelope = make_envelope(payload, producer=producer, correlation_id=correlation_id)
    await tx.run(
        """
        CREATE (:OutboxEvent {id: $id, type: $type, payload: $payload, created_at: $created_at,
                              aggregate_id: $aggregate_id, seq: $seq})
        """,
        id=envelope.id,
        type=envelope.type,
        payload=envelope.model_dump_json(),
        created_at=to_ms(envelope.occurred_at),
        aggregate_id=aggregate_id if aggregate_id is not None else payload.aggregate_id(),
        seq=seq,
    )
    return envelope


async def claim_batch(
    tx: AsyncManagedTransaction,
    *,
    relay_id: str,
    now_ms: int,
    until_ms: int,
    limit: int,
    exclude_aggregates: list[str] | None = None,
) -> list[PendingEvent]:
    """Claim up to ``limit`` unclaimed (or expired) events, in per-aggregate order.

    An event is left for a later pass while an earlier event of its aggregate is outside this
    batch (claimed by another relay, or cut off by the limit), so each aggregate's events are
    published in order even with several relays. ``_lock`` takes each node's write lock before
    the claim is re-checked, so two relays never both claim one event. ``exclude_aggregates``
    (waiting for a consumer's queue) are left out before the limit, so they cannot fill it.
    """
    result = await tx.run(
        """
        MATCH (e:OutboxEvent)
        WHERE (e.claimed_until IS NULL OR e.claimed_until < $now_ms)
          AND (e.aggregate_id IS NULL OR NOT e.aggregate_id IN $exclude)
        WITH e ORDER BY e.created_at, e.seq LIMIT $limit
        WITH collect(e) AS batch
        UNWIND batch AS e
        WITH e, batch
        WHERE NOT EXISTS {
          MATCH (p:OutboxEvent {aggregate_id: e.aggregate_id})
          WHERE p.seq < e.seq AND NOT p IN batch
        }
        SET e._lock = true
        WITH e, (e.claimed_until IS NULL OR e.claimed_until < $now_ms) AS free
        SET e.claimed_by = CASE WHEN free THEN $relay_id ELSE e.claimed_by END,
            e.claimed_until = CASE WHEN free THEN $until_ms ELSE e.claimed_until END
        REMOVE e._lock
        WITH e WHERE free
        RETURN e.id AS id, e.payload AS payload, e.aggregate_id AS aggregate_id
        ORDER BY e.aggregate_id, e.seq
        """,
        relay_id=relay_id,
        now_ms=now_ms,
        until_ms=until_ms,
        limit=limit,
        exclude=exclude_aggregates or [],
    )
    return [
        PendingEvent(
            id=record["id"], payload=record["payload"], aggregate_id=record["aggregate_id"]
        )
        async for record in result
    ]


async def delete_events(tx: AsyncManagedTransaction, *, relay_id: str, ids: list[str]) -> None:
    await tx.run(
        """
        UNWIND $ids AS id
        MATCH (e:OutboxEvent {id: id}) WHERE e.claimed_by = $relay_id
        DELETE e
        """,
        ids=ids,
        relay_id=relay_id,
    )


async def release_claims(tx: AsyncManagedTransaction, *, relay_id: str, ids: list[str]) -> None:
    await tx.run(
        """
        UNWIND $ids AS id
        MATCH (e:OutboxEvent {id: id}) WHERE e.claimed_by = $relay_id
        SET e.claimed_by = null, e.claimed_until = null
        """,
        ids=ids,
        relay_id=relay_id,
    )


async def defer_events(
    tx: AsyncManagedTransaction, *, relay_id: str, until: dict[str, int]
) -> None:
    """Keep claimed events (``id -> ms``) out of every relay's batches until then: the broker
    returned them because their consumer has not declared its queue yet. The later events of
    their aggregates wait too (``claim_batch`` keeps per-aggregate order)."""
    await tx.run(
        """
        UNWIND $items AS item
        MATCH (e:OutboxEvent {id: item.id}) WHERE e.claimed_by = $relay_id
        SET e.claimed_until = item.until
        """,
        items=[{"id": event_id, "until": ms} for event_id, ms in until.items()],
        relay_id=relay_id,
    )


async def oldest_created_ms(tx: AsyncManagedTransaction) -> int | None:
    """``created_at`` of the oldest outbox node (indexed: ``outbox_created_at``), or None."""
    result = await tx.run("MATCH (e:OutboxEvent) RETURN min(e.created_at) AS oldest")
    record = await result.single()
    return None if record is None or record["oldest"] is None else int(record["oldest"])
