"""Request and response shapes of network_service's HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from common.time import Timestamp

__all__ = [
    "FollowListItem",
    "FolloweeIds",
    "FollowerCount",
    "FollowerIds",
    "Relationship",
    "SuggestionItem",
    "SuggestionList",
    "UserSummary",
]


class UserSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    username: str
    display_name: str


class FollowListItem(UserSummary):
    followed_at: Timestamp = Field(description="When the follow was made (RFC 3339 UTC, ms)")


class Relationship(BaseModel):
    followers_count: int
    following_count: int
    followed_by_me: bool = Field(description="The caller follows this user (false when anonymous)")
    follows_me: bool = Field(description="This user follows the caller (false when anonymous)")


class SuggestionItem(UserSummary):
    mutual_count: int = Field(description="How many of the people you follow follow this user")


class SuggestionList(BaseModel):
    items: list[SuggestionItem]
    # Always null: suggestions are one ranked list of at most ``limit``; the field keeps the
    # shape of every other list.
    next_cursor: str | None = None


class FollowerIds(BaseModel):
    items: list[str]
    next_cursor: str | None = None


class FolloweeIds(BaseModel):
    items: list[str]


class FollowerCount(BaseModel):
    count: int
