"""Consumed events: the user.* events that keep the author replica."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import EventEnvelope, UserDeleted, UserRegistered, UserUpdated, parse_payload
from common.logging import get_logger
from common.messaging import Handler, PermanentError
from common.outbox import mark_processed
from post_service import SERVICE_NAME
from post_service.service.users import UserReplicaService

__all__ = ["make_handlers"]

# Queue "post.events"; also the consumer name in processed_events.

log = get_logger(__name__)

Effect = Callable[[UserReplicaService, EventEnvelope], Awaitable[None]]


async def _on_user_upsert(replica: UserReplicaService, envelope: EventEnvelope) -> None:
    payload = parse_payload(envelope)
    if not isinstance(payload, UserRegistered | UserUpdated):
        raise PermanentError(f"unexpected payload for {envelope.type}")
    await replica.upsert(
        payload.user_id, payload.username, payload.display_name, envelope.occurred_at
    )


async def _on_user_deleted(replica: UserReplicaService, envelope: EventEnvelope) -> None:
    payload = parse_payload(envelope)
    if not isinstance(payload, UserDeleted):
        raise PermanentError(f"unexpected payload for {envelope.type}")
    await replica.delete(payload.user_id, envelope.occurred_at)


def _guarded(sessionmaker: async_sessionmaker[AsyncSession], effect: Effect) -> Handler:
    """Run ``effect`` once per event id: the processed-event record commits with the effect."""

    async def handle(envelope: EventEnvelope) -> None:
        async with sessionmaker() as session, session.begin():
            if not await mark_processed(session, envelope.id, SERVICE_NAME):
                log.info("event_already_processed", event_id=envelope.id, type=envelope.type)
                return
            await effect(UserReplicaService(session), envelope)
        log.info("event_processed", event_id=envelope.id, type=envelope.type)

    return handle


def make_handlers(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Handler]:
    return {
        UserRegistered.event_type: _guarded(sessionmaker, _on_user_upsert),
        UserUpdated.event_type: _guarded(sessionmaker, _on_user_upsert),
        UserDeleted.event_type: _guarded(sessionmaker, _on_user_deleted),
    }
