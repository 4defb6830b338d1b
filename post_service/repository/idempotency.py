"""Idempotency keys of creating requests (``Idempotency-Key`` header)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from post_service.models import IdempotencyKey

__all__ = ["IdempotencyRepository", "StoredKey"]


@dataclass(frozen=True, slots=True)
class StoredKey:
    resource_id: str
    request_hash: str


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, user_id: str, scope: str, key: str) -> None:
        """Serialise concurrent requests with one key until this transaction ends."""
        await self.session.execute(
            select(
                func.pg_advisory_xact_lock(
                    func.hashtextextended(f"{user_id}\x1f{scope}\x1f{key}", 0)
                )
            )
        )

    async def find(self, user_id: str, scope: str, key: str, since: datetime) -> StoredKey | None:
        row = (
            await self.session.execute(
                select(IdempotencyKey.resource_id, IdempotencyKey.request_hash).where(
                    IdempotencyKey.user_id == user_id,
                    IdempotencyKey.scope == scope,
                    IdempotencyKey.key == key,
                    IdempotencyKey.created_at >= since,
                )
            )
        ).first()
        return None if row is None else StoredKey(*row)

    async def save(
        self,
        *,
        user_id: str,
        scope: str,
        key: str,
        resource_id: str,
        request_hash: str,
        at: datetime,
    ) -> None:
        stmt = insert(IdempotencyKey).values(
            user_id=user_id,
            scope=scope,
            key=key,
            resource_id=resource_id,
            request_hash=request_hash,
            created_at=at,
        )
        # An expired key (older than the window) is simply taken over.
        stmt = stmt.on_conflict_do_update(
            index_elements=[IdempotencyKey.user_id, IdempotencyKey.scope, IdempotencyKey.key],
            set_={
                "resource_id": stmt.excluded.resource_id,
                "request_hash": stmt.excluded.request_hash,
                "created_at": stmt.excluded.created_at,
            },
        )
        await self.session.execute(stmt)

    async def purge_expired(self, user_id: str, cutoff: datetime) -> None:
        """Drop the user's keys older than ``cutoff`` (done on each save: no sweeper needed)."""
        await self.session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.user_id == user_id, IdempotencyKey.created_at < cutoff
            )
        )
