"""Comments on posts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from post_service.models import Author, Comment, Post
from post_service.repository.errors import references_must_exist
from post_service.schemas import Comment as CommentView
from post_service.schemas import UserSummary

__all__ = ["CommentKey", "CommentRepository", "OwnedComment"]


@dataclass(frozen=True, slots=True)
class CommentKey:
    """Position in an oldest-first list: (created_at, id) ascending."""

    created_at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class OwnedComment:
    id: str
    post_id: str
    author_id: str
    post_author_id: str


class CommentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self, *, comment_id: str, post_id: str, author_id: str, content: str, at: datetime
    ) -> None:
        """Raises MissingReference when the post was deleted after the caller looked it up."""
        self.session.add(
            Comment(
                id=comment_id, post_id=post_id, author_id=author_id, content=content, created_at=at
            )
        )
        with references_must_exist():
            await self.session.flush()

    async def get_owned(self, comment_id: str) -> OwnedComment | None:
        row = (
            await self.session.execute(
                select(Comment.id, Comment.post_id, Comment.author_id, Post.author_id)
                .join(Post, Post.id == Comment.post_id)
                .where(Comment.id == comment_id)
            )
        ).first()
        return None if row is None else OwnedComment(*row)

    async def delete(self, comment_id: str) -> None:
        await self.session.execute(delete(Comment).where(Comment.id == comment_id))

    def _view_query(self) -> Select[str, str, str, datetime, str, str, str]:
        return select(
            Comment.id,
            Comment.post_id,
            Comment.content,
            Comment.created_at,
            Author.id,
            Author.username,
            Author.display_name,
        ).join(Author, Author.id == Comment.author_id)

    async def view(self, comment_id: str) -> CommentView | None:
        row = (
            await self.session.execute(self._view_query().where(Comment.id == comment_id))
        ).first()
        return None if row is None else _to_view(*row)

    async def page(
        self, post_id: str, after: CommentKey | None, limit: int
    ) -> list[tuple[CommentKey, CommentView]]:
        """Oldest first; served by ix_comments_post_id_created_at_id."""
        stmt = self._view_query().where(Comment.post_id == post_id)
        if after is not None:
            stmt = stmt.where(
                tuple_(Comment.created_at, Comment.id) > tuple_(after.created_at, after.id)
            )
        rows = await self.session.execute(
            stmt.order_by(Comment.created_at, Comment.id).limit(limit)
        )
        views = [_to_view(*row) for row in rows.tuples()]
        return [(CommentKey(v.created_at, v.id), v) for v in views]

    async def on_others_posts(self, user_id: str) -> list[OwnedComment]:
        """The user's comments on posts by someone else."""
        rows = await self.session.execute(
            select(Comment.id, Comment.post_id, Comment.author_id, Post.author_id)
            .join(Post, Post.id == Comment.post_id)
            .where(Comment.author_id == user_id, Post.author_id != user_id)
        )
        return [OwnedComment(*row) for row in rows.tuples()]

    async def delete_by_user(self, user_id: str) -> None:
        await self.session.execute(delete(Comment).where(Comment.author_id == user_id))


def _to_view(
    comment_id: str,
    post_id: str,
    content: str,
    created_at: datetime,
    author_id: str,
    username: str,
    display_name: str,
) -> CommentView:
    return CommentView(
        id=comment_id,
        post_id=post_id,
        author=UserSummary(id=author_id, username=username, display_name=display_name),
        content=content,
        created_at=created_at,
    )
