"""Request and response bodies (the public shapes of api.md and the internal read API)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from common.pagination import CursorTime
from common.text import check_storable
from common.time import Timestamp
from post_service.service.content import validate_content

__all__ = [
    "BatchRequest",
    "Comment",
    "CommentCreate",
    "Post",
    "PostCreate",
    "PostItems",
    "PostUpdate",
    "RecentItems",
    "RecentPost",
    "RecentRequest",
    "UserSummary",
]

# 1-500 characters after trimming, no control characters, no lone surrogate; stored trimmed.
Content = Annotated[str, AfterValidator(check_storable), AfterValidator(validate_content)]
Id = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(check_storable)]


class _Input(BaseModel):
    # Unknown fields are refused so no client can set ids, authors, counters or timestamps.
    model_config = ConfigDict(extra="forbid")


class PostCreate(_Input):
    content: Content
    reply_to_id: Id | None = None


class PostUpdate(_Input):
    content: Content


class CommentCreate(_Input):
    content: Content


class UserSummary(BaseModel):
    id: str
    username: str
    display_name: str


class Post(BaseModel):
    id: str
    author: UserSummary
    content: str
    created_at: Timestamp
    edited_at: Timestamp | None
    reply_to_id: str | None
    hashtags: list[str]
    mentions: list[UserSummary]
    like_count: int
    comment_count: int
    liked_by_me: bool


class Comment(BaseModel):
    id: str
    post_id: str
    author: UserSummary
    content: str
    created_at: Timestamp


class BatchRequest(_Input):
    ids: list[Id] = Field(max_length=1000)
    viewer_id: Id | None = None


class RecentRequest(_Input):
    author_ids: list[Id] = Field(max_length=10000)
    limit_per_author: int = Field(20, ge=1, le=200)
    before: CursorTime | None = None


class MentioningRequest(_Input):
    user_id: Id
    limit: int = Field(100, ge=1, le=1000)


class RecentPost(BaseModel):
    id: str
    author_id: str
    created_at: Timestamp


class PostItems(BaseModel):
    items: list[Post]


class RecentItems(BaseModel):
    items: list[RecentPost]
