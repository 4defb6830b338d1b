"""network_service's whole OpenAPI fuzzed (tests/support/fuzz.py): no answer is a 5xx."""

from __future__ import annotations

from neo4j import AsyncDriver

from tests.network_service.conftest import NetworkHarness
from tests.support.fuzz import fuzz_service
from tests.support.server import serve


async def test_no_server_errors(network: NetworkHarness, graph_driver: AsyncDriver) -> None:
    # User nodes as user.registered leaves them (the event path has its own tests), one
    # following the other, so authenticated operations and the lists reach real data.
    await graph_driver.execute_query(
        """
        UNWIND ['fuzzer-1', 'fuzzer-2'] AS id
        MERGE (u:User {id: id})
        SET u.username = 'u_' + id, u.display_name = 'U ' + id, u.profile_at = 0
        WITH collect(u) AS users
        WITH users[0] AS a, users[1] AS b
        MERGE (a)-[:FOLLOWS {since: 1, follower_id: a.id, followee_id: b.id}]->(b)
        """,
        database_="neo4j",
    )
    async with serve(network.app) as url:
        report = await fuzz_service(
            network.app.openapi(), url, token=network.tokens.mint("fuzzer-1", "u_fuzzer-1")
        )
    print(f"network_service: {report.requests} requests in {report.seconds:.1f} s")
    assert report.requests > 50
    assert report.server_errors == [], "\n".join(report.server_errors)
