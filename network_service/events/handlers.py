"""Handlers of the user events network_service consumes (all idempotent by construction)."""

from __future__ import annotations

from collections.abc import Callable

from neo4j import AsyncManagedTransaction

from common.events import (
    EventEnvelope,
    UserDeleted,
    UserRegistered,
    UserUnfollowed,
    UserUpdated,
    make_envelope,
    parse_payload,
)
from common.logging import bind_correlation_id, get_logger
from common.messaging import Handler
from common.time import to_ms, utcnow
from network_service import SERVICE_NAME
from network_service.repository import graph, outbox
from network_service.repository.driver import Graph

__all__ = ["UserEventHandlers"]

log = get_logger(__name__)


class UserEventHandlers:
    """user.registered / user.updated keep the node's names; user.deleted removes the node.

    Replays are harmless: the node is MERGEd, names only move forward in ``occurred_at`` and a
    second user.deleted finds nothing to delete (and so announces nothing).
    """

    def __init__(self, graph_db: Graph, *, on_event: Callable[[], None] | None = None) -> None:
        self._graph = graph_db
        self._on_event = on_event or (lambda: None)

    def handlers(self) -> dict[str, Handler]:
        return {
            UserRegistered.event_type: self.on_profile,
            UserUpdated.event_type: self.on_profile,
            UserDeleted.event_type: self.on_deleted,
        }

    async def on_profile(self, envelope: EventEnvelope) -> None:
        bind_correlation_id(envelope.correlation_id)
        payload = parse_payload(envelope)
        assert isinstance(payload, UserRegistered | UserUpdated)
        stored = await self._graph.write(
            graph.upsert_user_profile,
            user_id=payload.user_id,
            username=payload.username,
            display_name=payload.display_name or payload.username,
            occurred_at_ms=to_ms(envelope.occurred_at),
        )
        log.info("user_profile_stored", user_id=payload.user_id, type=envelope.type, kept=stored)

    async def on_deleted(self, envelope: EventEnvelope) -> None:
        bind_correlation_id(envelope.correlation_id)
        payload = parse_payload(envelope)
        assert isinstance(payload, UserDeleted)
        user_id = payload.user_id

        async def work(tx: AsyncManagedTransaction) -> int:
            # Feed keeps follower sets per followee; announcing each follow the account made
            # lets it drop the user from them without asking for a graph that no longer exists.
            removed = await graph.delete_user(tx, user_id=user_id, now_ms=to_ms(utcnow()))
            for edge in removed:
                unfollowed = make_envelope(
                    UserUnfollowed(follower_id=user_id, followee_id=edge.followee_id),
                    producer=SERVICE_NAME,
                    correlation_id=envelope.correlation_id,
                )
                await outbox.add_event(tx, unfollowed, aggregate_id=user_id, seq=edge.seq)
            return len(removed)

        announced = await self._graph.write(work)
        if announced:
            self._on_event()
        log.info("user_deleted", user_id=user_id, unfollows_announced=announced)
