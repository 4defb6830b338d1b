"""Users following each other at the same moment: no deadlock, one edge and one event each."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator

import pytest
from neo4j import AsyncDriver

from tests.network_service.conftest import NetworkHarness, assert_no_more, drain
from tests.network_service.test_events import BindQueue
from tests.network_service.test_follow_api import seed_users

PAIRS = 16
ROUNDS = 3
# Above Neo4j's dense-node threshold (50): relationships of dense nodes are kept in
# relationship groups with their own locks, where the follow deadlocks showed up.
FILLER_FOLLOWERS = 60


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def driver_log() -> Iterator[_Records]:
    """What the Neo4j driver logs; it logs each retried transaction with the error."""
    handler = _Records()
    logger = logging.getLogger("neo4j")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def make_dense(driver: AsyncDriver, user_ids: list[str]) -> None:
    await driver.execute_query(
        """
        UNWIND $ids AS id
        MATCH (u:User {id: id})
        UNWIND range(1, $n) AS k
        CREATE (f:User {id: id + '-filler-' + k, username: 'filler', profile_at: 0})
        CREATE (f)-[:FOLLOWS {since: 0, follower_id: f.id, followee_id: u.id, marker: 'seed'}]->(u)
        """,
        ids=user_ids,
        n=FILLER_FOLLOWERS,
        database_="neo4j",
    )


async def edge_counts(driver: AsyncDriver, user_ids: list[str]) -> Counter[tuple[str, str]]:
    records, _, _ = await driver.execute_query(
        """
        MATCH (a:User)-[r:FOLLOWS]->(b:User)
        WHERE a.id IN $ids AND b.id IN $ids
        RETURN a.id AS a, b.id AS b, count(r) AS n
        """,
        ids=user_ids,
        database_="neo4j",
    )
    return Counter({(record["a"], record["b"]): int(record["n"]) for record in records})


async def test_mutual_follows_at_once_do_not_deadlock(
    network: NetworkHarness,
    graph_driver: AsyncDriver,
    bind_queue: BindQueue,
    driver_log: _Records,
) -> None:
    pairs = [(f"left{i:02d}", f"right{i:02d}") for i in range(PAIRS)]
    users = [user for pair in pairs for user in pair]
    await seed_users(graph_driver, *users)
    await make_dense(graph_driver, users)
    followed = await bind_queue("user.followed")
    unfollowed = await bind_queue("user.unfollowed")
    directed = [*pairs, *((b, a) for a, b in pairs)]

    async def change(method: str, follower: str, followee: str) -> int:
        response = await network.client.request(
            method, f"/api/v1/me/following/{followee}", headers=network.auth(follower)
        )
        return response.status_code

    for round_ in range(ROUNDS):
        statuses = await asyncio.gather(*(change("PUT", a, b) for a, b in directed))
        assert statuses == [204] * len(directed), f"round {round_}"
        assert await edge_counts(graph_driver, users) == Counter(dict.fromkeys(directed, 1))
        events = await drain(followed, len(directed))
        assert Counter((e.data["follower_id"], e.data["followee_id"]) for e in events) == Counter(
            dict.fromkeys(directed, 1)
        )

        if round_ < ROUNDS - 1:
            statuses = await asyncio.gather(*(change("DELETE", a, b) for a, b in directed))
            assert statuses == [204] * len(directed), f"round {round_}"
            assert await edge_counts(graph_driver, users) == Counter()
            await drain(unfollowed, len(directed))

    await assert_no_more(followed)
    deadlocks = [message for message in driver_log.messages if "DeadlockDetected" in message]
    assert deadlocks == []
