"""PostgreSQL schema of post_service (the migrations create exactly this)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import new_metadata
from common.outbox import outbox_table, processed_events_table

__all__ = [
    "Author",
    "Base",
    "Comment",
    "IdempotencyKey",
    "Like",
    "Post",
    "PostHashtag",
    "PostMention",
]

# The search configuration; the generated column and every query must agree on it.
TS_CONFIG = "english"

TZ = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = new_metadata()


class Author(Base):
    """Replica of auth_service's users (only what a post needs), fed by user.* events.

    A deleted user keeps a tombstone row (``deleted_at``) so a late user.registered or
    user.updated cannot bring the account back.
    """

    __tablename__ = "authors"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200))
    # occurred_at of the last user.* event applied; older events are ignored.
    source_at: Mapped[datetime | None] = mapped_column(TZ)
    deleted_at: Mapped[datetime | None] = mapped_column(TZ)

    __table_args__ = (
        Index("ix_authors_username_lower", func.lower(username)),
        # Tombstones are few; the token deny-list reloads the recent ones every second.
        Index("ix_authors_deleted_at", deleted_at, postgresql_where=deleted_at.is_not(None)),
    )


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    author_id: Mapped[str] = mapped_column(ForeignKey("authors.id"))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)
    edited_at: Mapped[datetime | None] = mapped_column(TZ)
    reply_to_id: Mapped[str | None] = mapped_column(
        ForeignKey("posts.id", ondelete="SET NULL"), index=True
    )
    hashtags: Mapped[list[str]] = mapped_column(
        ARRAY(String(100)), server_default=text("'{}'::varchar[]")
    )
    # Counters live on the row (updated in the liking/commenting transaction) so reads are cheap.
    like_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    comment_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    search_vector: Mapped[str] = mapped_column(
        TSVECTOR,
        Computed(f"to_tsvector('{TS_CONFIG}', content)", persisted=True),
        # Only queries use it; never load it into Python.
        deferred=True,
    )

    __table_args__ = (
        CheckConstraint("like_count >= 0", name="like_count_non_negative"),
        CheckConstraint("comment_count >= 0", name="comment_count_non_negative"),
        # The user timeline: keyset pagination on (created_at, id) per author.
        Index("ix_posts_author_id_created_at_id", author_id, created_at.desc(), id.desc()),
        Index("ix_posts_search_vector", search_vector, postgresql_using="gin"),
    )


class PostHashtag(Base):
    """One row per (tag, post); carries created_at so listing by tag is an index range scan."""

    __tablename__ = "post_hashtags"

    tag: Mapped[str] = mapped_column(String(100), primary_key=True)
    post_id: Mapped[str] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(TZ)

    __table_args__ = (
        Index("ix_post_hashtags_tag_created_at_post_id", tag, created_at.desc(), post_id.desc()),
    )


class PostMention(Base):
    __tablename__ = "post_mentions"

    post_id: Mapped[str] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("authors.id"), primary_key=True, index=True)
    # Position in the content, so mentions come back in the order they were written.
    position: Mapped[int] = mapped_column(Integer)


class Like(Base):
    __tablename__ = "likes"

    post_id: Mapped[str] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("authors.id"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(TZ)

    __table_args__ = (
        Index("ix_likes_post_id_created_at_user_id", post_id, created_at.desc(), user_id.desc()),
    )


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    post_id: Mapped[str] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    author_id: Mapped[str] = mapped_column(ForeignKey("authors.id"), index=True)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)

    __table_args__ = (Index("ix_comments_post_id_created_at_id", post_id, created_at, id),)


class IdempotencyKey(Base):
    """``Idempotency-Key`` of a creating request -> the resource it created (24 h)."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # What the key was used for ("post" or "comment:<post id>"): one key, one resource.
    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TZ, index=True)
    # sha256 of the request body: a reused key with a different body is refused.
    request_hash: Mapped[str] = mapped_column(String(64))


outbox = outbox_table(Base.metadata)
processed_events = processed_events_table(Base.metadata)
