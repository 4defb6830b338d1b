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
)
from common.logging import get_logger
from common.messaging.handlers import EventHandlers
from common.time import to_ms, utcnow
from network_service import SERVICE_NAME
from network_service.repository import graph, outbox
from network_service.repository.driver import Graph

__all__ = ["build_handlers"]

log = get_logger(__name__)


def build_handlers(graph_db: Graph, *, on_event: Callable[[], None] | None = None) -> EventHandlers:
    """user.registered / user.updated keep the node's names; user.deleted removes the node.

    Replays are harmless: the node is MERGEd, names only move forward in ``occurred_at`` and a
    second user.deleted finds nothing to delete (and so announces nothing). ``on_event`` is
    called after outbox events were written (it wakes the relay).
    """
    handlers = EventHandlers()

    @handlers.on(UserRegistered, UserUpdated)
    async def on_profile(event: UserRegistered | UserUpdated, envelope: EventEnvelope) -> None:
        stored = await graph_db.write(
            graph.upsert_user_profile,
            user_id=event.user_id,
            username=event.username,
            display_name=event.display_name or event.username,
            occurred_at_ms=to_ms(envelope.occurred_at),
        )
        log.info("user_profile_stored", user_id=event.user_id, type=envelope.type, kept=stored)

    @handlers.on(UserDeleted)
    async def on_deleted(event: UserDeleted, envelope: EventEnvelope) -> None:
        user_id = event.user_id

        async def work(tx: AsyncManagedTransaction) -> int:
            # Feed keeps follower sets per followee; announcing each follow the account made
            # lets it drop the user from them without asking for a graph that no longer exists.
            removed = await graph.delete_user(tx, user_id=user_id, now_ms=to_ms(utcnow()))
            for edge in removed:
                await outbox.emit(
                    tx,
                    UserUnfollowed(follower_id=user_id, followee_id=edge.followee_id),
                    producer=SERVICE_NAME,
                    seq=edge.seq,
                    correlation_id=envelope.correlation_id,
                )
            return len(removed)

        announced = await graph_db.write(work)
        if announced and on_event is not None:
            on_event()
        log.info("user_deleted", user_id=user_id, unfollows_announced=announced)

    return handlers
