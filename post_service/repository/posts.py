"""Posts, their hashtags and mentions, and the read queries that page over them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    any_,
    delete,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON, aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from post_service.models import TS_CONFIG, Author, Like, Post, PostHashtag, PostMention
from post_service.schemas import Post as PostView
from post_service.schemas import UserSummary

__all__ = ["PostKey", "PostRepository", "RankKey"]


@dataclass(frozen=True, slots=True)
class PostKey:
    """Position in a newest-first list: (created_at, id) descending."""

    created_at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class RankKey:
    """Position in a search result: (rank, id) descending."""

    rank: float
    id: str


class PostRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- writes -------------------------------------------------------------------------------

    async def get(self, post_id: str, *, for_update: bool = False) -> Post | None:
        return await self.session.get(Post, post_id, with_for_update=for_update)

    async def exists(self, post_id: str) -> bool:
        found = await self.session.scalar(select(exists().where(Post.id == post_id)))
        return bool(found)

    async def add(
        self,
        *,
        post_id: str,
        author_id: str,
        content: str,
        created_at: datetime,
        reply_to_id: str | None,
        hashtags: Sequence[str],
        mention_ids: Sequence[str],
    ) -> None:
        self.session.add(
            Post(
                id=post_id,
                author_id=author_id,
                content=content,
                created_at=created_at,
                reply_to_id=reply_to_id,
                hashtags=list(hashtags),
            )
        )
        await self.session.flush()
        await self._write_tags_and_mentions(post_id, created_at, hashtags, mention_ids)

    async def update_content(
        self,
        post: Post,
        *,
        content: str,
        edited_at: datetime,
        hashtags: Sequence[str],
        mention_ids: Sequence[str],
    ) -> None:
        post.content = content
        post.edited_at = edited_at
        post.hashtags = list(hashtags)
        await self.session.flush()
        await self.session.execute(delete(PostHashtag).where(PostHashtag.post_id == post.id))
        await self.session.execute(delete(PostMention).where(PostMention.post_id == post.id))
        await self._write_tags_and_mentions(post.id, post.created_at, hashtags, mention_ids)

    async def _write_tags_and_mentions(
        self,
        post_id: str,
        created_at: datetime,
        hashtags: Sequence[str],
        mention_ids: Sequence[str],
    ) -> None:
        if hashtags:
            await self.session.execute(
                insert(PostHashtag),
                [{"tag": t, "post_id": post_id, "created_at": created_at} for t in hashtags],
            )
        if mention_ids:
            await self.session.execute(
                insert(PostMention),
                [
                    {"post_id": post_id, "user_id": user_id, "position": i}
                    for i, user_id in enumerate(mention_ids)
                ],
            )

    async def delete(self, post_id: str) -> None:
        await self.session.execute(delete(Post).where(Post.id == post_id))

    async def add_to_counters(self, post_id: str, *, likes: int = 0, comments: int = 0) -> None:
        await self.session.execute(
            update(Post)
            .where(Post.id == post_id)
            .values(like_count=Post.like_count + likes, comment_count=Post.comment_count + comments)
        )

    async def delete_by_author(self, author_id: str) -> list[str]:
        """Delete every post of the author (likes, comments, tags go by cascade); their ids."""
        rows = await self.session.scalars(
            delete(Post).where(Post.author_id == author_id).returning(Post.id)
        )
        return list(rows)

    async def delete_mentions_of(self, user_id: str) -> None:
        await self.session.execute(delete(PostMention).where(PostMention.user_id == user_id))

    # -- reads --------------------------------------------------------------------------------

    async def views(self, ids: Sequence[str], viewer_id: str | None) -> dict[str, PostView]:
        """Public shapes of the posts among ``ids`` that exist, keyed by id.

        One statement: the mentions come as a JSON array per row (correlated subquery) and
        the ids as one array parameter, so the SQL text (and the driver's prepared
        statement) is the same whatever the number of ids.
        """
        if not ids:
            return {}
        liked: ColumnElement[bool] = (
            exists().where(Like.post_id == Post.id, Like.user_id == viewer_id)
            if viewer_id is not None
            else false()
        )
        mentioned = aliased(Author)
        mentions = (
            select(
                func.json_agg(
                    aggregate_order_by(
                        func.json_build_array(
                            mentioned.id, mentioned.username, mentioned.display_name
                        ),
                        PostMention.position,
                    ),
                    type_=JSON,
                )
            )
            .join(mentioned, mentioned.id == PostMention.user_id)
            .where(PostMention.post_id == Post.id, mentioned.deleted_at.is_(None))
            .scalar_subquery()
        )
        rows = await self.session.execute(
            select(
                Post,
                Author.id,
                Author.username,
                Author.display_name,
                liked.label("liked"),
                mentions.label("mentions"),
            )
            .join(Author, Author.id == Post.author_id)
            .where(Post.id == any_(literal(list(ids), ARRAY(Post.id.type))))
        )
        result: dict[str, PostView] = {}
        for post, author_id, username, display_name, is_liked, mention_rows in rows.tuples():
            result[post.id] = PostView(
                id=post.id,
                author=UserSummary(id=author_id, username=username, display_name=display_name),
                content=post.content,
                created_at=post.created_at,
                edited_at=post.edited_at,
                reply_to_id=post.reply_to_id,
                hashtags=list(post.hashtags),
                mentions=[
                    UserSummary(id=user_id, username=name, display_name=display)
                    for user_id, name, display in mention_rows or ()
                ],
                like_count=post.like_count,
                comment_count=post.comment_count,
                liked_by_me=bool(is_liked),
            )
        return result

    async def active_author_timeline(
        self, author_id: str, after: PostKey | None, limit: int
    ) -> list[PostKey] | None:
        """A page of the author's post keys, newest first; None if no active author.

        One statement: the author row (the 404 check) left-joined to the page, which is
        served by ix_posts_author_id_created_at_id.
        """
        page = select(Post.created_at, Post.id).where(Post.author_id == author_id)
        if after is not None:
            page = page.where(tuple_(Post.created_at, Post.id) < tuple_(after.created_at, after.id))
        keys = page.order_by(Post.created_at.desc(), Post.id.desc()).limit(limit).lateral()
        rows: Sequence[tuple[str, datetime | None, str | None]] = (
            (
                await self.session.execute(
                    select(Author.id, keys.c.created_at, keys.c.id)
                    .select_from(Author)
                    .outerjoin(keys, true())
                    .where(Author.id == author_id, Author.deleted_at.is_(None))
                    .order_by(keys.c.created_at.desc(), keys.c.id.desc())
                )
            )
            .tuples()
            .all()
        )
        if not rows:
            return None
        return [
            PostKey(created_at, post_id)
            for _, created_at, post_id in rows
            if created_at is not None and post_id is not None
        ]

    async def by_tag(self, tag: str, after: PostKey | None, limit: int) -> list[PostKey]:
        """Newest first; served by ix_post_hashtags_tag_created_at_post_id."""
        h = PostHashtag
        stmt = select(h.created_at, h.post_id).where(h.tag == tag)
        if after is not None:
            stmt = stmt.where(tuple_(h.created_at, h.post_id) < tuple_(after.created_at, after.id))
        rows = await self.session.execute(
            stmt.order_by(h.created_at.desc(), h.post_id.desc()).limit(limit)
        )
        return [PostKey(created_at, post_id) for created_at, post_id in rows.tuples()]

    async def search(
        self, query: str, tag: str | None, after: RankKey | None, limit: int
    ) -> list[RankKey]:
        """Best match first (ts_rank_cd), ties newest id first; the GIN index finds matches."""
        tsquery = func.websearch_to_tsquery(TS_CONFIG, query)
        matches = select(
            Post.id.label("id"), func.ts_rank_cd(Post.search_vector, tsquery).label("rank")
        ).where(Post.search_vector.bool_op("@@")(tsquery))
        if tag is not None:
            matches = matches.where(
                Post.hashtags.contains(literal([tag], ARRAY(Post.hashtags.type.item_type)))
            )
        ranked = matches.subquery()
        stmt = select(ranked.c.rank, ranked.c.id)
        if after is not None:
            # rank is a float4; the cursor holds it exactly (float4 -> float64 -> JSON is exact).
            rank = literal(after.rank, Float())
            stmt = stmt.where(
                or_(ranked.c.rank < rank, and_(ranked.c.rank == rank, ranked.c.id < after.id))
            )
        rows = await self.session.execute(
            stmt.order_by(ranked.c.rank.desc(), ranked.c.id.desc()).limit(limit)
        )
        return [RankKey(float(rank), post_id) for rank, post_id in rows.tuples()]

    async def recent_by_authors(
        self, author_ids: Sequence[str], per_author: int, before: datetime | None
    ) -> list[tuple[str, str, datetime]]:
        """(id, author_id, created_at) of each author's newest posts, newest first overall.

        A LATERAL subquery per author keeps each one an index range scan.
        """
        if not author_ids:
            return []
        authors = (
            func.unnest(literal(list(author_ids), ARRAY(Post.author_id.type)))
            .table_valued("author_id")
            .render_derived()
        )
        per = select(Post.id, Post.author_id, Post.created_at).where(
            Post.author_id == authors.c.author_id
        )
        if before is not None:
            per = per.where(Post.created_at < before)
        lateral = per.order_by(Post.created_at.desc(), Post.id.desc()).limit(per_author).lateral()
        rows = await self.session.execute(
            select(lateral.c.id, lateral.c.author_id, lateral.c.created_at)
            .select_from(authors.join(lateral, true()))
            .order_by(lateral.c.created_at.desc(), lateral.c.id.desc())
        )
        return [
            (post_id, author_id, created_at) for post_id, author_id, created_at in rows.tuples()
        ]

    async def recent_mentioning(self, user_id: str, limit: int) -> list[tuple[str, str, datetime]]:
        """(id, author_id, created_at) of the newest posts that mention ``user_id``."""
        rows = await self.session.execute(
            select(Post.id, Post.author_id, Post.created_at)
            .join(PostMention, PostMention.post_id == Post.id)
            .where(PostMention.user_id == user_id)
            .order_by(Post.created_at.desc(), Post.id.desc())
            .limit(limit)
        )
        return [
            (post_id, author_id, created_at) for post_id, author_id, created_at in rows.tuples()
        ]
