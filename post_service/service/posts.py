"""Posts, likes, comments and search: the rules, and the events each change emits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import Forbidden, NotFound, Unauthorized, Unprocessable
from common.events import (
    CommentCreated,
    CommentDeleted,
    PostCreated,
    PostDeleted,
    PostLiked,
    PostUnliked,
    PostUpdated,
)
from common.ids import new_id
from common.outbox import emit
from common.pagination import Page, make_keyed_page
from common.security import AccessClaims
from common.time import utcnow
from post_service import SERVICE_NAME
from post_service.models import Author
from post_service.repository.authors import AuthorRepository
from post_service.repository.comments import CommentRepository
from post_service.repository.errors import MissingReference
from post_service.repository.idempotency import IdempotencyRepository
from post_service.repository.likes import LikeRepository
from post_service.repository.posts import PostKey, PostRepository
from post_service.schemas import (
    Comment,
    CommentCreate,
    Post,
    PostCreate,
    PostUpdate,
    RecentPost,
    UserSummary,
)
from post_service.service.content import normalize_tag, parse_hashtags, parse_mentions
from post_service.service.cursors import CursorCodec, RankCursor, TimeCursor

__all__ = ["IDEMPOTENCY_WINDOW", "PostService"]

IDEMPOTENCY_WINDOW = timedelta(hours=24)

K = TypeVar("K")


def _request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class PostService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.posts = PostRepository(session)
        self.authors = AuthorRepository(session)
        self.likes = LikeRepository(session)
        self.comments = CommentRepository(session)
        self.idempotency = IdempotencyRepository(session)

    # -- helpers ------------------------------------------------------------------------------

    # Every write locks the caller's replica row first (before any post or comment row, the
    # order user.deleted takes them in too) and is refused once it is a tombstone; 401 like
    # the token deny-list, which answers the same for a deleted account's token.
    async def _acting_author(self, user: AccessClaims) -> Author:
        author = await self.authors.ensure(user.sub, user.username)
        if author.deleted_at is not None:
            raise Unauthorized("This account has been deleted")
        return author

    async def _lock_acting_user(self, user: AccessClaims) -> None:
        if not await self.authors.lock_active(user.sub):
            raise Unauthorized("This account has been deleted")

    async def _view(self, post_id: str, viewer_id: str | None) -> Post:
        view = (await self.posts.views([post_id], viewer_id)).get(post_id)
        if view is None:
            raise NotFound("Post not found")
        return view

    async def _views_in_order(
        self, keys: Sequence[K], ids: Sequence[str], viewer_id: str | None
    ) -> list[tuple[K, Post]]:
        views = await self.posts.views(ids, viewer_id)
        return [(key, views[i]) for key, i in zip(keys, ids, strict=True) if i in views]

    async def _mention_ids(self, content: str) -> list[str]:
        names = parse_mentions(content)
        resolved = await self.authors.resolve_usernames(names)
        return list(dict.fromkeys(resolved[name] for name in names if name in resolved))

    async def _replayed(
        self, user_id: str, scope: str, key: str | None, body: dict[str, Any]
    ) -> str | None:
        """The id created earlier with this key, or None; locks the key until commit."""
        if key is None:
            return None
        await self.idempotency.lock(user_id, scope, key)
        stored = await self.idempotency.find(user_id, scope, key, utcnow() - IDEMPOTENCY_WINDOW)
        if stored is None:
            return None
        if stored.request_hash != _request_hash(body):
            raise Unprocessable(
                "This Idempotency-Key was already used with a different request",
                errors=[{"loc": ["header", "Idempotency-Key"], "msg": "Key reused"}],
            )
        return stored.resource_id

    async def _remember(
        self, user_id: str, scope: str, key: str | None, body: dict[str, Any], resource_id: str
    ) -> None:
        if key is not None:
            await self.idempotency.purge_expired(user_id, utcnow() - IDEMPOTENCY_WINDOW)
            await self.idempotency.save(
                user_id=user_id,
                scope=scope,
                key=key,
                resource_id=resource_id,
                request_hash=_request_hash(body),
                at=utcnow(),
            )

    # -- posts --------------------------------------------------------------------------------

    async def commit(self) -> None:
        """End the request's transaction now (the session dependency's commit is then a
        no-op), for effects outside the database that must follow it."""
        await self.session.commit()

    async def create_post(
        self, user: AccessClaims, data: PostCreate, idempotency_key: str | None
    ) -> Post:
        author = await self._acting_author(user)
        body = data.model_dump()
        replayed = await self._replayed(author.id, "post", idempotency_key, body)
        if replayed is not None:
            views = await self.posts.views([replayed], author.id)
            if replayed in views:
                return views[replayed]
        if data.reply_to_id is not None and not await self.posts.exists(data.reply_to_id):
            raise NotFound("The post replied to does not exist")
        post_id = new_id()
        created_at = utcnow()
        hashtags = parse_hashtags(data.content)
        mention_ids = await self._mention_ids(data.content)
        await self.posts.add(
            post_id=post_id,
            author_id=author.id,
            content=data.content,
            created_at=created_at,
            reply_to_id=data.reply_to_id,
            hashtags=hashtags,
            mention_ids=mention_ids,
        )
        await self._remember(author.id, "post", idempotency_key, body, post_id)
        await emit(
            self.session,
            PostCreated(
                post_id=post_id,
                author_id=author.id,
                content=data.content,
                created_at=created_at,
                reply_to_id=data.reply_to_id,
                hashtags=hashtags,
                mention_ids=mention_ids,
                author_username=author.username,
                author_display_name=author.display_name,
            ),
            producer=SERVICE_NAME,
        )
        return await self._view(post_id, author.id)

    async def get_post(self, post_id: str, viewer: AccessClaims | None) -> Post:
        return await self._view(post_id, viewer.sub if viewer else None)

    async def update_post(self, user: AccessClaims, post_id: str, data: PostUpdate) -> Post:
        await self._lock_acting_user(user)
        post = await self.posts.get(post_id, for_update=True)
        if post is None:
            raise NotFound("Post not found")
        if post.author_id != user.sub:
            raise Forbidden("Only the author can edit this post")
        edited_at = utcnow()
        await self.posts.update_content(
            post,
            content=data.content,
            edited_at=edited_at,
            hashtags=parse_hashtags(data.content),
            mention_ids=await self._mention_ids(data.content),
        )
        await emit(
            self.session,
            PostUpdated(
                post_id=post.id, author_id=post.author_id, content=data.content, edited_at=edited_at
            ),
            producer=SERVICE_NAME,
        )
        return await self._view(post_id, user.sub)

    async def delete_post(self, user: AccessClaims, post_id: str) -> None:
        await self._lock_acting_user(user)
        post = await self.posts.get(post_id, for_update=True)
        if post is None:
            raise NotFound("Post not found")
        if post.author_id != user.sub:
            raise Forbidden("Only the author can delete this post")
        await self.posts.delete(post_id)
        await emit(
            self.session,
            PostDeleted(post_id=post_id, author_id=post.author_id),
            producer=SERVICE_NAME,
        )

    async def timeline(
        self, user_id: str, viewer: AccessClaims | None, limit: int, after: TimeCursor | None
    ) -> Page[Post]:
        position = CursorCodec.parse_post(after)
        keys = await self.posts.active_author_timeline(user_id, position, limit + 1)
        if keys is None:
            raise NotFound("User not found")
        return await self._post_page(keys, limit, viewer)

    async def _post_page(
        self, keys: Sequence[PostKey], limit: int, viewer: AccessClaims | None
    ) -> Page[Post]:
        rows = await self._views_in_order(
            keys, [k.id for k in keys], viewer.sub if viewer else None
        )
        return make_keyed_page(rows, limit, CursorCodec.post)

    async def by_tag(
        self, tag: str, viewer: AccessClaims | None, limit: int, after: TimeCursor | None
    ) -> Page[Post]:
        position = CursorCodec.parse_post(after)
        keys = await self.posts.by_tag(normalize_tag(tag), position, limit + 1)
        return await self._post_page(keys, limit, viewer)

    async def search(
        self,
        query: str,
        tag: str | None,
        viewer: AccessClaims | None,
        limit: int,
        after: RankCursor | None,
    ) -> Page[Post]:
        position = CursorCodec.parse_rank(after)
        keys = await self.posts.search(
            query, normalize_tag(tag) if tag else None, position, limit + 1
        )
        rows = await self._views_in_order(
            keys, [k.id for k in keys], viewer.sub if viewer else None
        )
        return make_keyed_page(rows, limit, CursorCodec.rank)

    # -- likes --------------------------------------------------------------------------------

    async def like(self, user: AccessClaims, post_id: str) -> None:
        author = await self._acting_author(user)
        post = await self.posts.get(post_id)
        if post is None:
            raise NotFound("Post not found")
        try:
            added = await self.likes.add(post_id, author.id, utcnow())
        except MissingReference as exc:
            raise NotFound("Post not found") from exc  # deleted meanwhile
        if added:
            await self.posts.add_to_counters(post_id, likes=1)
            await emit(
                self.session,
                PostLiked(post_id=post_id, post_author_id=post.author_id, user_id=author.id),
                producer=SERVICE_NAME,
            )

    async def unlike(self, user: AccessClaims, post_id: str) -> None:
        await self._lock_acting_user(user)
        post = await self.posts.get(post_id)
        if post is None:
            # Unliking is idempotent: a missing post means there is no like left to remove.
            return
        if await self.likes.remove(post_id, user.sub):
            await self.posts.add_to_counters(post_id, likes=-1)
            await emit(
                self.session,
                PostUnliked(post_id=post_id, post_author_id=post.author_id, user_id=user.sub),
                producer=SERVICE_NAME,
            )

    async def likers(self, post_id: str, limit: int, after: TimeCursor | None) -> Page[UserSummary]:
        position = CursorCodec.parse_like(after)
        if not await self.posts.exists(post_id):
            raise NotFound("Post not found")
        rows = await self.likes.page(post_id, position, limit + 1)
        return make_keyed_page(rows, limit, CursorCodec.like)

    # -- comments -----------------------------------------------------------------------------

    async def create_comment(
        self,
        user: AccessClaims,
        post_id: str,
        data: CommentCreate,
        idempotency_key: str | None,
    ) -> Comment:
        author = await self._acting_author(user)
        post = await self.posts.get(post_id)
        if post is None:
            raise NotFound("Post not found")
        scope = f"comment:{post_id}"
        body = data.model_dump()
        replayed = await self._replayed(author.id, scope, idempotency_key, body)
        if replayed is not None:
            existing = await self.comments.view(replayed)
            if existing is not None:
                return existing
        comment_id = new_id()
        try:
            await self.comments.add(
                comment_id=comment_id,
                post_id=post_id,
                author_id=author.id,
                content=data.content,
                at=utcnow(),
            )
        except MissingReference as exc:
            raise NotFound("Post not found") from exc  # deleted meanwhile
        await self.posts.add_to_counters(post_id, comments=1)
        await self._remember(author.id, scope, idempotency_key, body, comment_id)
        await emit(
            self.session,
            CommentCreated(
                comment_id=comment_id,
                post_id=post_id,
                post_author_id=post.author_id,
                author_id=author.id,
            ),
            producer=SERVICE_NAME,
        )
        view = await self.comments.view(comment_id)
        assert view is not None
        return view

    async def list_comments(
        self, post_id: str, limit: int, after: TimeCursor | None
    ) -> Page[Comment]:
        position = CursorCodec.parse_comment(after)
        if not await self.posts.exists(post_id):
            raise NotFound("Post not found")
        rows = await self.comments.page(post_id, position, limit + 1)
        return make_keyed_page(rows, limit, CursorCodec.comment)

    async def delete_comment(self, user: AccessClaims, comment_id: str) -> None:
        await self._lock_acting_user(user)
        comment = await self.comments.get_owned(comment_id)
        if comment is None:
            raise NotFound("Comment not found")
        if user.sub not in (comment.author_id, comment.post_author_id):
            raise Forbidden("Only the comment's author or the post's author can delete it")
        await self.comments.delete(comment_id)
        await self.posts.add_to_counters(comment.post_id, comments=-1)
        await emit(
            self.session,
            CommentDeleted(
                comment_id=comment.id,
                post_id=comment.post_id,
                post_author_id=comment.post_author_id,
                author_id=comment.author_id,
            ),
            producer=SERVICE_NAME,
        )

    # -- internal read API --------------------------------------------------------------------

    async def batch(self, ids: Sequence[str], viewer_id: str | None) -> list[Post]:
        unique = list(dict.fromkeys(ids))
        views = await self.posts.views(unique, viewer_id)
        return [views[i] for i in unique if i in views]

    async def recent(
        self, author_ids: Sequence[str], per_author: int, before: datetime | None
    ) -> list[RecentPost]:
        rows = await self.posts.recent_by_authors(
            list(dict.fromkeys(author_ids)), per_author, before
        )
        return [RecentPost(id=i, author_id=a, created_at=t) for i, a, t in rows]

    async def mentioning(self, user_id: str, limit: int) -> list[RecentPost]:
        """The newest posts mentioning ``user_id`` (feed_service rebuilds mentions from it)."""
        rows = await self.posts.recent_mentioning(user_id, limit)
        return [RecentPost(id=i, author_id=a, created_at=t) for i, a, t in rows]
