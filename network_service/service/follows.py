"""The follow-graph rules: who may follow whom, and which changes are announced."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from neo4j import AsyncManagedTransaction

from common.errors import NotFound, Unauthorized, Unprocessable
from common.events import UserFollowed, UserUnfollowed
from common.ids import new_id
from common.time import from_ms, to_ms, utcnow
from network_service import SERVICE_NAME
from network_service.models import FollowEdge, RelationshipCounts, Suggestion
from network_service.repository import graph, outbox
from network_service.repository.driver import Graph

__all__ = ["FollowService", "RequestClock"]

_USER_NOT_FOUND = "User not found"


class RequestClock:
    """Request times for follow and unfollow: wall-clock ns, strictly increasing in a process.

    Two requests of one process never share a time, and a clock step back cannot order a later
    request before an earlier one. Across processes the order is as good as their clocks' sync.
    """

    def __init__(self) -> None:
        self._last = 0

    def now(self) -> int:
        self._last = max(time.time_ns(), self._last + 1)
        return self._last


class FollowService:
    """Follow/unfollow (each change and its event in one transaction) and graph reads.

    ``on_event`` is called after a commit that wrote an outbox event, to wake the relay.
    Each follow and unfollow is ordered by its request time (``accepted_at``, from
    ``accept()``, taken when the request arrived): one older than the last operation applied
    to the same pair is a no-op (graph.py, ``_ORDER``).
    """

    def __init__(self, graph_db: Graph, *, on_event: Callable[[], None] | None = None) -> None:
        self._graph = graph_db
        self._on_event = on_event or (lambda: None)
        self._clock = RequestClock()

    def accept(self) -> int:
        """The request time of a follow or unfollow arriving now."""
        return self._clock.now()

    async def follow(
        self,
        *,
        follower_id: str,
        follower_username: str,
        followee_id: str,
        accepted_at: int | None = None,
    ) -> None:
        op_at = self.accept() if accepted_at is None else accepted_at
        if follower_id == followee_id:
            raise Unprocessable(
                "You cannot follow yourself",
                errors=[{"loc": ["path", "user_id"], "msg": "Cannot follow yourself"}],
            )

        async def work(tx: AsyncManagedTransaction) -> bool:
            outcome = await graph.create_follow(
                tx,
                follower_id=follower_id,
                follower_username=follower_username,
                followee_id=followee_id,
                now_ms=to_ms(utcnow()),
                op_at=op_at,
                marker=new_id(),
            )
            if outcome.caller_deleted:
                raise Unauthorized("This account no longer exists")
            change = outcome.change
            if not outcome.followee_exists or change is None:
                raise NotFound(_USER_NOT_FOUND)
            if not change.changed:
                return False
            await outbox.emit(
                tx,
                UserFollowed(
                    follower_id=follower_id,
                    followee_id=followee_id,
                    followed_at=from_ms(change.since_ms),
                ),
                producer=SERVICE_NAME,
                seq=change.seq,
            )
            return True

        if await self._graph.write(work):
            self._on_event()

    async def deleted_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """Accounts deleted at or after ``since`` (their tombstones), for the token deny-list."""
        rows = await self._graph.read(graph.deleted_since, since_ms=to_ms(since))
        return [(user_id, from_ms(at)) for user_id, at in rows]

    async def unfollow(
        self, *, follower_id: str, followee_id: str, accepted_at: int | None = None
    ) -> None:
        op_at = self.accept() if accepted_at is None else accepted_at

        async def work(tx: AsyncManagedTransaction) -> bool:
            change = await graph.delete_follow(
                tx, follower_id=follower_id, followee_id=followee_id, op_at=op_at
            )
            if change is None:
                return False
            await outbox.emit(
                tx,
                UserUnfollowed(follower_id=follower_id, followee_id=followee_id),
                producer=SERVICE_NAME,
                seq=change.seq,
            )
            return True

        if await self._graph.write(work):
            self._on_event()

    async def followers(
        self, user_id: str, *, limit: int, after: tuple[int, str] | None
    ) -> list[FollowEdge]:
        edges = await self._graph.read(
            graph.list_followers, user_id=user_id, limit=limit, after=after
        )
        if edges is None:
            raise NotFound(_USER_NOT_FOUND)
        return edges

    async def following(
        self, user_id: str, *, limit: int, after: tuple[int, str] | None
    ) -> list[FollowEdge]:
        edges = await self._graph.read(
            graph.list_following, user_id=user_id, limit=limit, after=after
        )
        if edges is None:
            raise NotFound(_USER_NOT_FOUND)
        return edges

    async def relationship(self, user_id: str, *, viewer_id: str | None) -> RelationshipCounts:
        counts = await self._graph.read(
            graph.relationship_counts, user_id=user_id, viewer_id=viewer_id
        )
        if counts is None:
            raise NotFound(_USER_NOT_FOUND)
        return counts

    async def suggestions(self, user_id: str, *, limit: int) -> list[Suggestion]:
        return await self._graph.read(graph.suggestions, user_id=user_id, limit=limit)

    async def follower_ids(self, user_id: str, *, limit: int, after_id: str | None) -> list[str]:
        ids = await self._graph.read(
            graph.follower_ids_page, user_id=user_id, limit=limit, after_id=after_id
        )
        if ids is None:
            raise NotFound(_USER_NOT_FOUND)
        return ids

    async def followee_ids(self, user_id: str) -> list[str]:
        ids = await self._graph.read(graph.followee_ids, user_id=user_id)
        if ids is None:
            raise NotFound(_USER_NOT_FOUND)
        return ids

    async def follower_count(self, user_id: str) -> int:
        count = await self._graph.read(graph.count_followers, user_id=user_id)
        if count is None:
            raise NotFound(_USER_NOT_FOUND)
        return count
