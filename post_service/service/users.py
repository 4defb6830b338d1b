"""The author replica, kept from auth_service's user.* events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from common.events import CommentDeleted, PostDeleted, PostUnliked
from common.outbox import emit
from post_service import SERVICE_NAME
from post_service.repository.authors import AuthorRepository
from post_service.repository.comments import CommentRepository
from post_service.repository.likes import LikeRepository
from post_service.repository.posts import PostRepository

__all__ = ["UserReplicaService"]


class UserReplicaService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.authors = AuthorRepository(session)
        self.posts = PostRepository(session)
        self.likes = LikeRepository(session)
        self.comments = CommentRepository(session)

    async def upsert(
        self, user_id: str, username: str, display_name: str, occurred_at: datetime
    ) -> None:
        await self.authors.apply_event(user_id, username, display_name, occurred_at)

    async def delete(self, user_id: str, occurred_at: datetime) -> None:
        """Remove everything the user made, announcing each removal the feed must know about.

        Likes and comments on the user's own posts go with the posts (post.deleted covers
        them); those on other people's posts are announced one by one and uncounted.

        The tombstone comes first: its row lock waits for the writes in flight (each holds a
        share lock on the row, see ``AuthorRepository.ensure``) and refuses the later ones, so
        the removal below sees every write the user will ever have made.
        """
        await self.authors.mark_deleted(user_id, occurred_at)
        for post_id, post_author_id in await self.likes.on_others_posts(user_id):
            await self.posts.add_to_counters(post_id, likes=-1)
            await emit(
                self.session,
                PostUnliked(post_id=post_id, post_author_id=post_author_id, user_id=user_id),
                producer=SERVICE_NAME,
            )
        for comment in await self.comments.on_others_posts(user_id):
            await self.posts.add_to_counters(comment.post_id, comments=-1)
            await emit(
                self.session,
                CommentDeleted(
                    comment_id=comment.id,
                    post_id=comment.post_id,
                    post_author_id=comment.post_author_id,
                    author_id=user_id,
                ),
                producer=SERVICE_NAME,
            )
        await self.likes.delete_by_user(user_id)
        await self.comments.delete_by_user(user_id)
        for post_id in await self.posts.delete_by_author(user_id):
            await emit(
                self.session, PostDeleted(post_id=post_id, author_id=user_id), producer=SERVICE_NAME
            )
        await self.posts.delete_mentions_of(user_id)
