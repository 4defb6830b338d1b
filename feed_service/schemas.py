"""Response and request bodies of the public feed and notification API (api.md shapes)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

from feed_service.service.notifications import check_notification_id

__all__ = ["MarkRead", "Notification", "NotificationPage", "Post", "PostPage", "UserSummary"]


class UserSummary(BaseModel):
    id: str
    username: str
    display_name: str


class Post(BaseModel):
    id: str
    author: UserSummary
    content: str
    created_at: str
    edited_at: str | None
    reply_to_id: str | None
    hashtags: list[str]
    mentions: list[UserSummary]
    like_count: int
    comment_count: int
    liked_by_me: bool


class PostPage(BaseModel):
    items: list[Post]
    next_cursor: str | None


class Notification(BaseModel):
    id: str
    type: Literal["follow", "like", "comment", "mention"]
    actor: UserSummary
    post_id: str | None
    comment_id: str | None
    created_at: str
    read: bool


class NotificationPage(BaseModel):
    items: list[Notification]
    next_cursor: str | None
    unread_count: int


# Checked here, not when the pointer is next read: one a client could store that Redis then
# refuses would break that user's notification list.
NotificationId = Annotated[str, AfterValidator(check_notification_id)]


class MarkRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    up_to_id: NotificationId | None = None
