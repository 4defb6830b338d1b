"""Neo4j schema: constraints and indexes (network_service's "migrations").

Every statement is idempotent (``IF NOT EXISTS``), so running it at each start-up is safe.
"""

from __future__ import annotations

from typing import LiteralString

from neo4j import AsyncDriver

__all__ = ["SCHEMA_STATEMENTS", "ensure_schema"]

SCHEMA_STATEMENTS: tuple[LiteralString, ...] = (
    "CREATE CONSTRAINT user_id IF NOT EXISTS FOR (u:User) REQUIRE u.id IS UNIQUE",
    # Tombstones keep a late user.registered (or a still-valid token) from resurrecting an
    # account that was deleted.
    "CREATE CONSTRAINT deleted_user_id IF NOT EXISTS FOR (d:DeletedUser) REQUIRE d.id IS UNIQUE",
    # The token deny-list reloads the recent tombstones every second.
    "CREATE INDEX deleted_user_at IF NOT EXISTS FOR (d:DeletedUser) ON (d.deleted_at)",
    "CREATE CONSTRAINT outbox_event_id IF NOT EXISTS FOR (e:OutboxEvent) REQUIRE e.id IS UNIQUE",
    # Pages a user's followers by id without expanding and sorting all of them.
    "CREATE INDEX follows_followee IF NOT EXISTS "
    "FOR ()-[r:FOLLOWS]-() ON (r.followee_id, r.follower_id)",
    "CREATE INDEX outbox_created_at IF NOT EXISTS FOR (e:OutboxEvent) ON (e.created_at)",
    "CREATE INDEX outbox_aggregate IF NOT EXISTS FOR (e:OutboxEvent) ON (e.aggregate_id)",
)


async def ensure_schema(driver: AsyncDriver, database: str) -> None:
    """Create the constraints and indexes that do not exist yet, and wait until they are online."""
    for statement in SCHEMA_STATEMENTS:
        await driver.execute_query(statement, database_=database)
    await driver.execute_query("CALL db.awaitIndexes(60)", database_=database)
