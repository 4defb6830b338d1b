"""Every Cypher query on users and FOLLOWS relationships.

Queries are literal strings with ``$parameters`` only; nothing is ever built from input. The
functions take a transaction so the service layer decides what runs atomically together.

Layout: ``(:User {id, username, display_name, profile_at, event_seq})``
``-[:FOLLOWS {since, follower_id, followee_id, marker, op_at}]->(:User)`` where ``since`` is
milliseconds since the epoch, ``op_at`` the request time of the last operation applied to the
pair, ``(:User)-[:UNFOLLOWED {at}]->(:User)`` the same for an unfollowed pair (``_ORDER``),
the two ids copy the end nodes' ids for the index that pages followers, ``profile_at`` the
``occurred_at`` (ms) of the event that last set the names (so an older event never
overwrites a newer one) and ``event_seq`` the per-follower sequence of outbox events.
``(:DeletedUser {id})`` tombstones mark deleted accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neo4j import AsyncManagedTransaction, Record

from network_service.models import FollowEdge, RelationshipCounts, Suggestion, UserRef

__all__ = [
    "EdgeChange",
    "FollowOutcome",
    "UnfollowedEdge",
    "count_followers",
    "create_follow",
    "delete_follow",
    "delete_user",
    "deleted_since",
    "followee_ids",
    "follower_ids_page",
    "list_followers",
    "list_following",
    "relationship_counts",
    "suggestions",
    "upsert_user_profile",
]

# Profile timestamp of a node made from token claims: any real user event is newer.
_PROVISIONAL_PROFILE_AT = -1

# _LOCK_BOTH: follow and unfollow write-lock both end nodes, always the smaller id first,
# before they touch the relationship. Creating or deleting a relationship makes Neo4j lock
# both nodes (their relationship groups on dense nodes) itself; with only the follower locked
# up front, "A follows B" and "B follows A" at the same moment each held one node and waited
# for the other (DeadlockDetected, retried after about a second). In one global order the
# second transaction waits on the first lock instead.

# _ORDER: each follow and unfollow carries the time its request was accepted (``op_at``, ns,
# strictly increasing per process). The pair keeps the time of the last operation applied to
# it: ``op_at`` on the FOLLOWS relationship, or ``at`` on an ``UNFOLLOWED`` tombstone
# relationship once unfollowed (at most one of the two exists). An operation older than that is
# a no-op, so a request the client gave up on, still retried by the driver or still running
# after the client went away, cannot commit over a later, acknowledged one on the same pair.
# Relationships without ``op_at`` (written before this rule) count as older than any request.
_NEVER = -1


@dataclass(frozen=True, slots=True)
class EdgeChange:
    """Outcome of a follow or unfollow: whether the graph changed, and the event sequence."""

    changed: bool
    since_ms: int
    seq: int


@dataclass(frozen=True, slots=True)
class FollowOutcome:
    """``change`` is ``None`` when the caller was deleted or the followee does not exist."""

    caller_deleted: bool
    followee_exists: bool
    change: EdgeChange | None


@dataclass(frozen=True, slots=True)
class UnfollowedEdge:
    followee_id: str
    seq: int


def _user(record: Record, prefix: str = "") -> UserRef:
    username = record[f"{prefix}username"]
    return UserRef(
        id=record[f"{prefix}id"],
        username=username,
        display_name=record[f"{prefix}display_name"] or username,
    )


async def create_follow(
    tx: AsyncManagedTransaction,
    *,
    follower_id: str,
    follower_username: str,
    followee_id: str,
    now_ms: int,
    op_at: int,
    marker: str,
) -> FollowOutcome:
    """Create the follow unless the caller's account was deleted, the followee does not exist,
    or a newer operation on the pair was applied already (see ``_ORDER``).

    One query, checks included: each round trip inside the transaction costs a few ms.
    The follower's node is created from token claims when its user.registered has not arrived
    yet. Setting ``_lock`` takes both endpoints' write locks (see ``_LOCK_BOTH``) before the
    relationships are read, so every follow and unfollow of one follower is serialised:
    ``event_seq`` never loses an update and its order is the commit order.
    """
    result = await tx.run(
        """
        OPTIONAL MATCH (gone:DeletedUser {id: $follower_id})
        OPTIONAL MATCH (b:User {id: $followee_id})
        OPTIONAL CALL (gone, b) {
          WITH gone, b WHERE gone IS NULL AND b IS NOT NULL
          MERGE (a:User {id: $follower_id})
            ON CREATE SET a.username = $username, a.display_name = $username,
                          a.profile_at = $provisional
          WITH a, b
          FOREACH (n IN CASE WHEN a.id < b.id THEN [a, b] ELSE [b, a] END | SET n._lock = true)
          WITH a, b
          OPTIONAL MATCH (a)-[old:FOLLOWS]->(b)
          OPTIONAL MATCH (a)-[t:UNFOLLOWED]->(b)
          WITH a, b, old, t, coalesce(old.op_at, t.at, $never) <= $op_at AS current
          FOREACH (_ IN CASE WHEN current AND old IS NULL THEN [1] ELSE [] END |
            CREATE (a)-[:FOLLOWS {since: $now_ms, marker: $marker, follower_id: a.id,
                                  followee_id: b.id, op_at: $op_at}]->(b))
          FOREACH (r IN CASE WHEN current AND old IS NOT NULL THEN [old] ELSE [] END |
            SET r.op_at = $op_at)
          FOREACH (x IN CASE WHEN current AND t IS NOT NULL THEN [t] ELSE [] END | DELETE x)
          WITH a, b, current AND old IS NULL AS created
          SET a.event_seq = coalesce(a.event_seq, 0) + CASE WHEN created THEN 1 ELSE 0 END
          REMOVE a._lock, b._lock
          WITH a, b, created
          OPTIONAL MATCH (a)-[r:FOLLOWS]->(b)
          // Again under the lock: a deletion that committed while this query ran (after the
          // first check) is seen now, and the caller rolls the transaction back.
          OPTIONAL MATCH (late:DeletedUser {id: $follower_id})
          RETURN created, coalesce(r.since, $now_ms) AS since, a.event_seq AS seq,
                 late IS NOT NULL AS late_gone
        }
        RETURN gone IS NOT NULL OR coalesce(late_gone, false) AS caller_deleted,
               b IS NOT NULL AS followee_exists, created, since, seq
        """,
        follower_id=follower_id,
        username=follower_username,
        provisional=_PROVISIONAL_PROFILE_AT,
        followee_id=followee_id,
        now_ms=now_ms,
        op_at=op_at,
        never=_NEVER,
        marker=marker,
    )
    record = await result.single(strict=True)
    change = (
        None
        if record["created"] is None
        else EdgeChange(
            changed=bool(record["created"]), since_ms=record["since"], seq=record["seq"]
        )
    )
    return FollowOutcome(
        caller_deleted=bool(record["caller_deleted"]),
        followee_exists=bool(record["followee_exists"]),
        change=change,
    )


async def delete_follow(
    tx: AsyncManagedTransaction, *, follower_id: str, followee_id: str, op_at: int
) -> EdgeChange | None:
    """Delete the follow; ``None`` when there was none or a newer operation on the pair was
    applied already (nothing changed, nothing to announce).

    Leaves (or moves forward) the pair's ``UNFOLLOWED`` tombstone even when there was no
    follow, so a follow accepted earlier that commits later is a no-op (``_ORDER``). Locks
    both endpoints in the order of ``_LOCK_BOTH`` before the relationships are read.
    """
    result = await tx.run(
        """
        MATCH (a:User {id: $follower_id})
        OPTIONAL MATCH (b:User {id: $followee_id})
        WITH a, b
        FOREACH (n IN CASE WHEN b IS NULL THEN [a] WHEN a.id < b.id THEN [a, b] ELSE [b, a] END |
          SET n._lock = true)
        WITH a, b
        OPTIONAL MATCH (a)-[r:FOLLOWS]->(b)
        OPTIONAL MATCH (a)-[t:UNFOLLOWED]->(b)
        WITH a, b, r, t, b IS NOT NULL AND coalesce(r.op_at, t.at, $never) <= $op_at AS current
        WITH a, b, r, t, current, current AND r IS NOT NULL AS removed, r.since AS since
        FOREACH (_ IN CASE WHEN current AND t IS NULL THEN [1] ELSE [] END |
          CREATE (a)-[:UNFOLLOWED {at: $op_at}]->(b))
        FOREACH (x IN CASE WHEN current AND t IS NOT NULL THEN [t] ELSE [] END |
          SET x.at = $op_at)
        FOREACH (x IN CASE WHEN removed THEN [r] ELSE [] END | DELETE x)
        SET a.event_seq = coalesce(a.event_seq, 0) + CASE WHEN removed THEN 1 ELSE 0 END
        REMOVE a._lock, b._lock
        RETURN removed, since, a.event_seq AS seq
        """,
        follower_id=follower_id,
        followee_id=followee_id,
        op_at=op_at,
        never=_NEVER,
    )
    record = await result.single()
    if record is None or not record["removed"]:
        return None
    return EdgeChange(changed=True, since_ms=record["since"], seq=record["seq"])


async def _list_edges(
    tx: AsyncManagedTransaction,
    query: Any,
    *,
    user_id: str,
    limit: int,
    after: tuple[int, str] | None,
) -> list[FollowEdge] | None:
    result = await tx.run(
        query,
        user_id=user_id,
        limit=limit,
        after_since=after[0] if after else None,
        after_id=after[1] if after else None,
    )
    records = [record async for record in result]
    if not records:
        return None  # the user does not exist
    return [
        FollowEdge(user=_user(record), since_ms=record["since"])
        for record in records
        if record["id"] is not None
    ]


async def list_followers(
    tx: AsyncManagedTransaction, *, user_id: str, limit: int, after: tuple[int, str] | None
) -> list[FollowEdge] | None:
    """Followers newest follow first, keyset on ``(since, id)``; ``None`` for an unknown user."""
    return await _list_edges(
        tx,
        """
        MATCH (u:User {id: $user_id})
        OPTIONAL MATCH (u)<-[r:FOLLOWS]-(f:User)
        WHERE $after_since IS NULL
           OR r.since < $after_since OR (r.since = $after_since AND f.id < $after_id)
        WITH r, f ORDER BY r.since DESC, f.id DESC LIMIT $limit
        RETURN f.id AS id, f.username AS username, f.display_name AS display_name,
               r.since AS since
        """,
        user_id=user_id,
        limit=limit,
        after=after,
    )


async def list_following(
    tx: AsyncManagedTransaction, *, user_id: str, limit: int, after: tuple[int, str] | None
) -> list[FollowEdge] | None:
    """Followees newest follow first, keyset on ``(since, id)``; ``None`` for an unknown user."""
    return await _list_edges(
        tx,
        """
        MATCH (u:User {id: $user_id})
        OPTIONAL MATCH (u)-[r:FOLLOWS]->(f:User)
        WHERE $after_since IS NULL
           OR r.since < $after_since OR (r.since = $after_since AND f.id < $after_id)
        WITH r, f ORDER BY r.since DESC, f.id DESC LIMIT $limit
        RETURN f.id AS id, f.username AS username, f.display_name AS display_name,
               r.since AS since
        """,
        user_id=user_id,
        limit=limit,
        after=after,
    )


async def relationship_counts(
    tx: AsyncManagedTransaction, *, user_id: str, viewer_id: str | None
) -> RelationshipCounts | None:
    # COUNT {} on a single relationship type is answered from the node's degree, not a scan.
    result = await tx.run(
        """
        MATCH (u:User {id: $user_id})
        OPTIONAL MATCH (me:User {id: $viewer_id})
        RETURN COUNT { (u)<-[:FOLLOWS]-() } AS followers_count,
               COUNT { (u)-[:FOLLOWS]->() } AS following_count,
               me IS NOT NULL AND EXISTS { (me)-[:FOLLOWS]->(u) } AS followed_by_me,
               me IS NOT NULL AND EXISTS { (u)-[:FOLLOWS]->(me) } AS follows_me
        """,
        user_id=user_id,
        viewer_id=viewer_id,
    )
    record = await result.single()
    if record is None:
        return None
    return RelationshipCounts(
        followers_count=record["followers_count"],
        following_count=record["following_count"],
        followed_by_me=bool(record["followed_by_me"]),
        follows_me=bool(record["follows_me"]),
    )


async def suggestions(tx: AsyncManagedTransaction, *, user_id: str, limit: int) -> list[Suggestion]:
    """Friends of friends by number of mutual connections (most first, then by id)."""
    result = await tx.run(
        """
        MATCH (me:User {id: $user_id})-[:FOLLOWS]->(via:User)-[:FOLLOWS]->(s:User)
        WHERE s <> me AND NOT EXISTS { (me)-[:FOLLOWS]->(s) }
        WITH s, count(DISTINCT via) AS mutual
        ORDER BY mutual DESC, s.id ASC
        LIMIT $limit
        RETURN s.id AS id, s.username AS username, s.display_name AS display_name, mutual
        """,
        user_id=user_id,
        limit=limit,
    )
    return [
        Suggestion(user=_user(record), mutual_count=record["mutual"]) async for record in result
    ]


async def follower_ids_page(
    tx: AsyncManagedTransaction, *, user_id: str, limit: int, after_id: str | None
) -> list[str] | None:
    """Follower ids in id order after ``after_id``; ``None`` for an unknown user.

    A seek on the (followee_id, follower_id) relationship index reads only the followers
    after the cursor, and one collected list crosses the wire instead of a record per id
    (per-record overhead dominates at 10k ids a page).
    """
    result = await tx.run(
        """
        MATCH (u:User {id: $user_id})
        RETURN COLLECT {
          MATCH ()-[r:FOLLOWS]->()
          USING INDEX r:FOLLOWS(followee_id, follower_id)
          WHERE r.followee_id = $user_id AND r.follower_id > $after_id
          RETURN r.follower_id ORDER BY r.follower_id LIMIT $limit
        } AS ids
        """,
        user_id=user_id,
        limit=limit,
        after_id=after_id or "",  # every id sorts after ""
    )
    record = await result.single()
    return None if record is None else list(record["ids"])


async def followee_ids(tx: AsyncManagedTransaction, *, user_id: str) -> list[str] | None:
    result = await tx.run(
        """
        MATCH (u:User {id: $user_id})
        RETURN [(u)-[:FOLLOWS]->(f:User) | f.id] AS ids
        """,
        user_id=user_id,
    )
    record = await result.single()
    return None if record is None else list(record["ids"])


async def count_followers(tx: AsyncManagedTransaction, *, user_id: str) -> int | None:
    result = await tx.run(
        "MATCH (u:User {id: $user_id}) RETURN COUNT { (u)<-[:FOLLOWS]-() } AS n",
        user_id=user_id,
    )
    record = await result.single()
    return None if record is None else int(record["n"])


async def upsert_user_profile(
    tx: AsyncManagedTransaction,
    *,
    user_id: str,
    username: str,
    display_name: str,
    occurred_at_ms: int,
) -> bool:
    """Create or update a user's node from an event; False when the account was deleted.

    A profile older than the one stored is ignored, so a late user.registered cannot undo a
    user.updated.
    """
    result = await tx.run(
        """
        OPTIONAL MATCH (gone:DeletedUser {id: $id})
        WITH gone WHERE gone IS NULL
        MERGE (u:User {id: $id})
          ON CREATE SET u.profile_at = $provisional
        SET u._lock = true
        WITH u
        FOREACH (_ IN CASE WHEN u.profile_at <= $at THEN [1] ELSE [] END |
          SET u.username = $username, u.display_name = $display_name, u.profile_at = $at)
        REMOVE u._lock
        RETURN u.id AS id
        """,
        id=user_id,
        username=username,
        display_name=display_name,
        at=occurred_at_ms,
        provisional=_PROVISIONAL_PROFILE_AT,
    )
    return await result.single() is not None


async def delete_user(
    tx: AsyncManagedTransaction, *, user_id: str, now_ms: int
) -> list[UnfollowedEdge]:
    """Tombstone the account and DETACH DELETE its node.

    Returns the follows the user had made, each with its event sequence, so their
    user.unfollowed events can go out in the same transaction.
    """
    await tx.run(
        "MERGE (d:DeletedUser {id: $id}) ON CREATE SET d.deleted_at = $now_ms",
        id=user_id,
        now_ms=now_ms,
    )
    result = await tx.run(
        """
        MATCH (u:User {id: $id})
        SET u._lock = true
        WITH u, coalesce(u.event_seq, 0) AS base
        WITH u, base, [(u)-[:FOLLOWS]->(f:User) | f.id] AS followees
        DETACH DELETE u
        RETURN base, followees
        """,
        id=user_id,
    )
    record = await result.single()
    if record is None:
        return []
    base: int = record["base"]
    return [
        UnfollowedEdge(followee_id=followee, seq=base + offset)
        for offset, followee in enumerate(record["followees"], start=1)
    ]


async def deleted_since(tx: AsyncManagedTransaction, *, since_ms: int) -> list[tuple[str, int]]:
    """Tombstones written at or after ``since_ms``: the token deny-list's source."""
    result = await tx.run(
        "MATCH (d:DeletedUser) WHERE d.deleted_at >= $since RETURN d.id AS id, d.deleted_at AS at",
        since=since_ms,
    )
    return [(record["id"], record["at"]) async for record in result]
