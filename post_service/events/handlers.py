"""Consumed events: the user.* events that keep the author replica."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import EventEnvelope, UserDeleted, UserRegistered, UserUpdated
from common.logging import get_logger
from common.messaging.handlers import EventHandlers
from common.outbox import mark_processed
from post_service import SERVICE_NAME
from post_service.service.users import UserReplicaService

__all__ = ["build_handlers"]

# Queue "post.events"; also the consumer name in processed_events.

log = get_logger(__name__)


def build_handlers(sessionmaker: async_sessionmaker[AsyncSession]) -> EventHandlers:
    handlers = EventHandlers()

    async def once(
        envelope: EventEnvelope, effect: Callable[[UserReplicaService], Awaitable[None]]
    ) -> None:
        """Apply ``effect`` once per event id: the processed-event record commits with it."""
        async with sessionmaker() as session, session.begin():
            if not await mark_processed(session, envelope.id, SERVICE_NAME):
                log.info("event_already_processed", event_id=envelope.id, type=envelope.type)
                return
            await effect(UserReplicaService(session))
        log.info("event_processed", event_id=envelope.id, type=envelope.type)

    @handlers.on(UserRegistered, UserUpdated)
    async def on_user_upsert(event: UserRegistered | UserUpdated, envelope: EventEnvelope) -> None:
        await once(
            envelope,
            lambda replica: replica.upsert(
                event.user_id, event.username, event.display_name, envelope.occurred_at
            ),
        )

    @handlers.on(UserDeleted)
    async def on_user_deleted(event: UserDeleted, envelope: EventEnvelope) -> None:
        await once(envelope, lambda replica: replica.delete(event.user_id, envelope.occurred_at))

    return handlers
