"""The author replica: usernames and display names kept from user.* events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from post_service.models import Author

__all__ = ["AuthorRepository"]


class AuthorRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, author_id: str) -> Author | None:
        return await self.session.get(Author, author_id)

    async def get_active(self, author_id: str) -> Author | None:
        author = await self.get(author_id)
        return author if author is not None and author.deleted_at is None else None

    async def ensure(self, author_id: str, username: str) -> Author:
        """The replica row of an authenticated user, created from token claims when missing,
        and share-locked until the transaction ends.

        user.registered may lag behind the user's first write; the event fills in the display
        name later (``source_at`` NULL lets any event win).

        The lock (FOR SHARE; FOR KEY SHARE would not conflict with the tombstone's UPDATE) is
        what makes deletion final: user.deleted writes the tombstone first, which waits for
        every write holding this lock, then removes content, which sees those writes; a write
        that locks after the tombstone reads it (a locking read sees the latest committed row)
        and is refused.
        """
        await self.session.execute(
            insert(Author)
            .values(id=author_id, username=username, display_name=username)
            .on_conflict_do_nothing(index_elements=[Author.id])
        )
        author = await self.session.get(
            Author, author_id, populate_existing=True, with_for_update={"read": True}
        )
        assert author is not None
        return author

    async def lock_active(self, author_id: str) -> bool:
        """Share-lock the user's replica row (as :meth:`ensure`); False if it is a tombstone.

        For writes that need no replica row of their own (edit, delete, unlike): a user with
        no row has never written here, so nothing of theirs can race a deletion.
        """
        deleted_at = await self.session.scalar(
            select(Author.deleted_at).where(Author.id == author_id).with_for_update(read=True)
        )
        return deleted_at is None

    async def deleted_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """Tombstones written at or after ``since``: the token deny-list's source."""
        rows = await self.session.execute(
            select(Author.id, Author.deleted_at).where(Author.deleted_at >= since)
        )
        return [(user_id, at) for user_id, at in rows.tuples() if at is not None]

    async def apply_event(
        self, author_id: str, username: str, display_name: str, occurred_at: datetime
    ) -> None:
        """Upsert from user.registered/user.updated; older events and tombstones win."""
        stmt = insert(Author).values(
            id=author_id, username=username, display_name=display_name, source_at=occurred_at
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[Author.id],
            set_={
                "username": stmt.excluded.username,
                "display_name": stmt.excluded.display_name,
                "source_at": stmt.excluded.source_at,
            },
            where=(Author.deleted_at.is_(None))
            & or_(Author.source_at.is_(None), Author.source_at <= stmt.excluded.source_at),
        )
        await self.session.execute(stmt)

    async def mark_deleted(self, author_id: str, deleted_at: datetime) -> None:
        stmt = insert(Author).values(
            id=author_id, username="", display_name="", deleted_at=deleted_at
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[Author.id], set_={"deleted_at": stmt.excluded.deleted_at}
        )
        await self.session.execute(stmt)

    async def resolve_usernames(self, usernames: Sequence[str]) -> dict[str, str]:
        """Lower-cased username -> user id, for the active users among ``usernames``."""
        if not usernames:
            return {}
        rows = await self.session.execute(
            select(func.lower(Author.username), Author.id).where(
                func.lower(Author.username).in_(list(usernames)), Author.deleted_at.is_(None)
            )
        )
        return {name: user_id for name, user_id in rows.tuples()}
