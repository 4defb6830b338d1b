"""Publishing side: every event is written to the outbox in the caller's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from common.events import EventPayload
from common.outbox import add_event

__all__ = ["PRODUCER", "emit"]

PRODUCER = "post"


async def emit(session: AsyncSession, payload: EventPayload) -> None:
    """Queue ``payload`` for publishing; it leaves only if the transaction commits."""
    await add_event(session, payload, producer=PRODUCER)
