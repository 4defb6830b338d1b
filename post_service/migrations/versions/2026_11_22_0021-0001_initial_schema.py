"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 00:21:21.068182
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "authors",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("source_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authors")),
    )
    op.create_index(
        "ix_authors_lower_username", "authors", [sa.literal_column("lower(username)")], unique=False
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("aggregate_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(
        "ix_outbox_pending_aggregate",
        "outbox",
        ["aggregate_id", "seq"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_index(
        "ix_outbox_pending_seq",
        "outbox",
        ["seq"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_index(
        "ix_outbox_published_at",
        "outbox",
        ["published_at"],
        unique=False,
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_processed_events"),
    )
    op.create_index(
        "ix_processed_events_processed_at", "processed_events", ["processed_at"], unique=False
    )
    op.create_table(
        "posts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("author_id", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reply_to_id", sa.String(length=64), nullable=True),
        sa.Column(
            "hashtags",
            postgresql.ARRAY(sa.String(length=100)),
            server_default=sa.text("'{}'::varchar[]"),
            nullable=False,
        ),
        sa.Column("like_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("comment_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('english', content)", persisted=True),
            nullable=False,
        ),
        sa.CheckConstraint("comment_count >= 0", name=op.f("ck_posts_comment_count_non_negative")),
        sa.CheckConstraint("like_count >= 0", name=op.f("ck_posts_like_count_non_negative")),
        sa.ForeignKeyConstraint(
            ["author_id"], ["authors.id"], name=op.f("fk_posts_author_id_authors")
        ),
        sa.ForeignKeyConstraint(
            ["reply_to_id"],
            ["posts.id"],
            name=op.f("fk_posts_reply_to_id_posts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_posts")),
    )
    op.create_index(
        "ix_posts_author_id_created_at_id",
        "posts",
        ["author_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_index(op.f("ix_posts_reply_to_id"), "posts", ["reply_to_id"], unique=False)
    op.create_index(
        "ix_posts_search_vector", "posts", ["search_vector"], unique=False, postgresql_using="gin"
    )
    op.create_table(
        "comments",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("post_id", sa.String(length=64), nullable=False),
        sa.Column("author_id", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["authors.id"], name=op.f("fk_comments_author_id_authors")
        ),
        sa.ForeignKeyConstraint(
            ["post_id"], ["posts.id"], name=op.f("fk_comments_post_id_posts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comments")),
    )
    op.create_index(op.f("ix_comments_author_id"), "comments", ["author_id"], unique=False)
    op.create_index(
        "ix_comments_post_id_created_at_id",
        "comments",
        ["post_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "likes",
        sa.Column("post_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"], ["posts.id"], name=op.f("fk_likes_post_id_posts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["authors.id"], name=op.f("fk_likes_user_id_authors")),
        sa.PrimaryKeyConstraint("post_id", "user_id", name=op.f("pk_likes")),
    )
    op.create_index(
        "ix_likes_post_id_created_at_user_id",
        "likes",
        ["post_id", sa.literal_column("created_at DESC"), sa.literal_column("user_id DESC")],
        unique=False,
    )
    op.create_index(op.f("ix_likes_user_id"), "likes", ["user_id"], unique=False)
    op.create_table(
        "post_hashtags",
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.Column("post_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["posts.id"],
            name=op.f("fk_post_hashtags_post_id_posts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tag", "post_id", name=op.f("pk_post_hashtags")),
    )
    op.create_index(op.f("ix_post_hashtags_post_id"), "post_hashtags", ["post_id"], unique=False)
    op.create_index(
        "ix_post_hashtags_tag_created_at_post_id",
        "post_hashtags",
        ["tag", sa.literal_column("created_at DESC"), sa.literal_column("post_id DESC")],
        unique=False,
    )
    op.create_table(
        "post_mentions",
        sa.Column("post_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["posts.id"],
            name=op.f("fk_post_mentions_post_id_posts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["authors.id"], name=op.f("fk_post_mentions_user_id_authors")
        ),
        sa.PrimaryKeyConstraint("post_id", "user_id", name=op.f("pk_post_mentions")),
    )
    op.create_index(op.f("ix_post_mentions_user_id"), "post_mentions", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_post_mentions_user_id"), table_name="post_mentions")
    op.drop_table("post_mentions")
    op.drop_index("ix_post_hashtags_tag_created_at_post_id", table_name="post_hashtags")
    op.drop_index(op.f("ix_post_hashtags_post_id"), table_name="post_hashtags")
    op.drop_table("post_hashtags")
    op.drop_index(op.f("ix_likes_user_id"), table_name="likes")
    op.drop_index("ix_likes_post_id_created_at_user_id", table_name="likes")
    op.drop_table("likes")
    op.drop_index("ix_comments_post_id_created_at_id", table_name="comments")
    op.drop_index(op.f("ix_comments_author_id"), table_name="comments")
    op.drop_table("comments")
    op.drop_index("ix_posts_search_vector", table_name="posts", postgresql_using="gin")
    op.drop_index(op.f("ix_posts_reply_to_id"), table_name="posts")
    op.drop_index("ix_posts_author_id_created_at_id", table_name="posts")
    op.drop_table("posts")
    op.drop_index("ix_processed_events_processed_at", table_name="processed_events")
    op.drop_table("processed_events")
    op.drop_index(
        "ix_outbox_published_at",
        table_name="outbox",
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    op.drop_index(
        "ix_outbox_pending_seq",
        table_name="outbox",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_index(
        "ix_outbox_pending_aggregate",
        table_name="outbox",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox")
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_authors_lower_username", table_name="authors")
    op.drop_table("authors")
