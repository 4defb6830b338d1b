"""Likes: one row per (post, user)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from post_service.models import Author, Like, Post
from post_service.repository.errors import references_must_exist
from post_service.schemas import UserSummary

__all__ = ["LikeKey", "LikeRepository"]


@dataclass(frozen=True, slots=True)
class LikeKey:
    created_at: datetime
    user_id: str


class LikeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, post_id: str, user_id: str, at: datetime) -> bool:
        """True when the like is new (so it is counted and announced once).

        Raises MissingReference when the post was deleted after the caller looked it up.
        """
        with references_must_exist():
            inserted = await self.session.scalar(
                insert(Like)
                .values(post_id=post_id, user_id=user_id, created_at=at)
                .on_conflict_do_nothing(index_elements=[Like.post_id, Like.user_id])
                .returning(Like.post_id)
            )
        return inserted is not None

    async def remove(self, post_id: str, user_id: str) -> bool:
        removed = await self.session.scalar(
            delete(Like)
            .where(Like.post_id == post_id, Like.user_id == user_id)
            .returning(Like.post_id)
        )
        return removed is not None

    async def page(
        self, post_id: str, after: LikeKey | None, limit: int
    ) -> list[tuple[LikeKey, UserSummary]]:
        """Likers, most recent first."""
        stmt = (
            select(Like.created_at, Author.id, Author.username, Author.display_name)
            .join(Author, Author.id == Like.user_id)
            .where(Like.post_id == post_id)
        )
        if after is not None:
            stmt = stmt.where(
                tuple_(Like.created_at, Like.user_id) < tuple_(after.created_at, after.user_id)
            )
        rows = await self.session.execute(
            stmt.order_by(Like.created_at.desc(), Like.user_id.desc()).limit(limit)
        )
        return [
            (LikeKey(at, uid), UserSummary(id=uid, username=name, display_name=display))
            for at, uid, name, display in rows.tuples()
        ]

    async def on_others_posts(self, user_id: str) -> list[tuple[str, str]]:
        """(post_id, post_author_id) of the user's likes on posts by someone else."""
        rows = await self.session.execute(
            select(Like.post_id, Post.author_id)
            .join(Post, Post.id == Like.post_id)
            .where(Like.user_id == user_id, Post.author_id != user_id)
        )
        return [(post_id, author_id) for post_id, author_id in rows.tuples()]

    async def delete_by_user(self, user_id: str) -> None:
        await self.session.execute(delete(Like).where(Like.user_id == user_id))
