"""Follows racing an account deletion: each one is refused or removed with the account, and
no follow brings the deleted account's node back."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from neo4j import AsyncDriver

from common.events import UserDeleted
from common.messaging.publisher import Publisher
from tests.network_service.conftest import NetworkHarness, deliver

FOLLOWEES = 12


async def _follow_until_refused(
    network: NetworkHarness, follower: str, offset: int, outcomes: Counter[int]
) -> None:
    n = offset
    auth = network.auth(follower)
    while True:
        n += 1
        target = f"f{n % FOLLOWEES}"
        if n % 3:
            r = await network.client.put(f"/api/v1/me/following/{target}", headers=auth)
        else:
            r = await network.client.delete(f"/api/v1/me/following/{target}", headers=auth)
        outcomes[r.status_code] += 1
        if r.status_code == 401:
            return
        assert r.status_code == 204, r.text


async def test_follows_racing_a_deletion_leave_nothing_behind(
    network: NetworkHarness,
    auth_publisher: Publisher,
    graph_driver: AsyncDriver,
) -> None:
    # The followees' nodes directly (waiting for each user.registered is slow on a busy
    # machine); each victim's node comes from its token claims on its first follow.
    await graph_driver.execute_query(
        "UNWIND $ids AS id MERGE (u:User {id: id}) SET u.username = id, u.display_name = id",
        ids=[f"f{i}" for i in range(FOLLOWEES)],
        database_="neo4j",
    )
    for round_ in range(3):
        victim = f"victim{round_}"
        outcomes: Counter[int] = Counter()
        writers = [
            asyncio.create_task(_follow_until_refused(network, victim, k * 5, outcomes))
            for k in range(4)
        ]
        try:
            while outcomes[204] < 20:  # the writers are well under way
                await asyncio.sleep(0.01)
            await deliver(auth_publisher, UserDeleted(user_id=victim))
            await asyncio.wait_for(asyncio.gather(*writers), timeout=120)
        finally:
            for task in writers:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        records, _, _ = await graph_driver.execute_query(
            "OPTIONAL MATCH (u:User {id: $id}) "
            "OPTIONAL MATCH (u)-[r:FOLLOWS]-() "
            "RETURN count(DISTINCT u) AS nodes, count(r) AS edges",
            id=victim,
            database_="neo4j",
        )
        assert (records[0]["nodes"], records[0]["edges"]) == (0, 0), (round_, dict(outcomes))
