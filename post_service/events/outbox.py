"""Publishing side: every event is written to the outbox in the caller's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from common.events import EventPayload
from common.outbox import add_event
from post_service import SERVICE_NAME

__all__ = ["emit"]


async def emit(session: AsyncSession, payload: EventPayload) -> None:
    """Queue ``payload`` for publishing; it leaves only if the transaction commits."""
    await add_event(session, payload, producer=SERVICE_NAME)
