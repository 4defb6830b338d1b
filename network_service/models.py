"""Domain records read from the graph (plain data; the API maps them to schemas)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FollowEdge", "RelationshipCounts", "Suggestion", "UserRef"]


@dataclass(frozen=True, slots=True)
class UserRef:
    id: str
    username: str
    display_name: str


@dataclass(frozen=True, slots=True)
class FollowEdge:
    """The other end of a FOLLOWS relationship and when it was made (ms since the epoch)."""

    user: UserRef
    since_ms: int


@dataclass(frozen=True, slots=True)
class Suggestion:
    user: UserRef
    mutual_count: int


@dataclass(frozen=True, slots=True)
class RelationshipCounts:
    followers_count: int
    following_count: int
    followed_by_me: bool
    follows_me: bool
