"""What the load did, and what that allows the system to show afterwards.

Every write the load sends is an `Attempt`, with its outcome. An attempt is

* acknowledged (2xx): its effect must be visible, unless a later acknowledged write undid it;
* rejected (4xx): it had no effect (e.g. liking a post deleted meanwhile gives 404);
* unknown (5xx or no answer): it may or may not have taken effect.

Each resource (a post, its content, a like, a follow, a comment, an account) is written by one
load task only, one request at a time, so the writes to one resource are totally ordered by
the time they were sent. That makes the allowed final states simple: the value of the last
acknowledged write, or of any unknown write sent after it (`Register.allowed`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Outcome(Enum):
    ACKED = "acked"
    REJECTED = "rejected"
    UNKNOWN = "unknown"

    @classmethod
    def of(cls, status: int | None) -> Outcome:
        if status is None or status >= 500:
            return cls.UNKNOWN
        return cls.ACKED if status < 300 else cls.REJECTED


# Values of the registers below.
PRESENT = "present"
ABSENT = "absent"


@dataclass
class Register:
    """One resource's writes, in the order they were sent."""

    initial: Hashable = ABSENT
    writes: list[tuple[Hashable, Outcome]] = field(default_factory=list)

    def write(self, value: Hashable, outcome: Outcome) -> None:
        if outcome is not Outcome.REJECTED:
            self.writes.append((value, outcome))

    def allowed(self) -> set[Hashable]:
        """The final values a correct system may show: nothing acknowledged is lost."""
        allowed: set[Hashable] = {self.initial}
        for value, outcome in self.writes:
            if outcome is Outcome.ACKED:
                allowed = {value}
            else:
                allowed.add(value)
        return allowed


@dataclass
class Request:
    """One HTTP request of the load (reads too), for the availability check."""

    method: str
    route: str  # the path with ids replaced by placeholders, e.g. /api/v1/posts/{id}/like
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no answer (connection refused, timeout)
    error: str = ""


@dataclass
class Ledger:
    """Everything the load wrote, per resource, plus every request it sent.

    Posts and comments are named by a token written into their content (an unknown create has
    no id, but its token tells whether it was applied, and applied twice).
    """

    users: dict[str, Register] = field(default_factory=dict)  # username -> present
    emails: dict[str, str] = field(default_factory=dict)  # username -> address
    user_ids: dict[str, str] = field(default_factory=dict)  # username -> id (acked only)
    posts: dict[str, Register] = field(default_factory=dict)  # post token -> present/absent
    contents: dict[str, Register] = field(default_factory=dict)  # post token -> content
    post_authors: dict[str, str] = field(default_factory=dict)  # post token -> author id
    likes: dict[tuple[str, str], Register] = field(default_factory=dict)  # (user id, token)
    comments: dict[str, Register] = field(default_factory=dict)  # comment token -> presence
    comment_posts: dict[str, str] = field(default_factory=dict)  # comment token -> post token
    follows: dict[tuple[str, str], Register] = field(default_factory=dict)  # (follower, followee)
    requests: list[Request] = field(default_factory=list)

    @staticmethod
    def _at(table: dict[Any, Register], key: Hashable) -> Register:
        if key not in table:
            table[key] = Register()
        return table[key]

    def registered(self, username: str, email: str, outcome: Outcome, user_id: str | None) -> None:
        self._at(self.users, username).write(PRESENT, outcome)
        self.emails[username] = email
        if user_id is not None:
            self.user_ids[username] = user_id

    def posted(self, token: str, author_id: str, content: str, outcome: Outcome) -> None:
        self._at(self.posts, token).write(PRESENT, outcome)
        self._at(self.contents, token).write(content, outcome)
        self.post_authors[token] = author_id

    def edited(self, token: str, content: str, outcome: Outcome) -> None:
        self._at(self.contents, token).write(content, outcome)

    def deleted_post(self, token: str, outcome: Outcome) -> None:
        self._at(self.posts, token).write(ABSENT, outcome)

    def liked(self, user_id: str, token: str, liked: bool, outcome: Outcome) -> None:
        self._at(self.likes, (user_id, token)).write(PRESENT if liked else ABSENT, outcome)

    def commented(self, token: str, post_token: str, outcome: Outcome) -> None:
        self._at(self.comments, token).write(PRESENT, outcome)
        self.comment_posts[token] = post_token

    def deleted_comment(self, token: str, outcome: Outcome) -> None:
        self._at(self.comments, token).write(ABSENT, outcome)

    def followed(self, follower: str, followee: str, follows: bool, outcome: Outcome) -> None:
        self._at(self.follows, (follower, followee)).write(PRESENT if follows else ABSENT, outcome)

    def acked_count(self) -> int:
        tables: Iterable[dict[Any, Register]] = (
            self.users,
            self.posts,
            self.contents,
            self.likes,
            self.comments,
            self.follows,
        )
        return sum(
            1
            for table in tables
            for register in table.values()
            for _value, outcome in register.writes
            if outcome is Outcome.ACKED
        )
