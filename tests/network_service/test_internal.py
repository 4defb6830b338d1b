"""Internal read APIs for feed rebuilds, their speed on a 100k-follower account, and 503s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from neo4j import AsyncDriver

from common.internal import INTERNAL_TOKEN_HEADER, internal_headers
from network_service.settings import NetworkSettings
from tests.network_service.conftest import (
    NetworkHarness,
    clear_graph,
    make_settings,
    running_app,
)
from tests.network_service.test_follow_api import follow, seed_users
from tests.support.jwt import TokenFactory
from tests.support.server import free_port


@pytest.fixture(autouse=True)
def service_token(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every internal request here is feed_service's: it carries the internal token."""
    if "network" not in request.fixturenames:
        yield
        return
    network: NetworkHarness = request.getfixturevalue("network")
    network.client.headers.update(internal_headers(network.app.state.settings))
    yield
    network.client.headers.pop(INTERNAL_TOKEN_HEADER, None)


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong", 403)])
async def test_internal_api_needs_the_service_token(
    network: NetworkHarness, token: str | None, status: int
) -> None:
    del network.client.headers[INTERNAL_TOKEN_HEADER]
    headers = {} if token is None else {INTERNAL_TOKEN_HEADER: token}
    for suffix in ("followers", "followees", "follower-count"):
        response = await network.client.get(f"/internal/v1/users/x/{suffix}", headers=headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"


async def test_followers_followees_and_count(
    network: NetworkHarness, graph_driver: AsyncDriver
) -> None:
    fans = [f"fan{i:02d}" for i in range(25)]
    await seed_users(graph_driver, "star", "other", *fans)
    for fan in fans:
        await follow(network, fan, "star")
    await follow(network, "star", "other")
    await follow(network, "star", "fan03")

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        response = await network.client.get("/internal/v1/users/star/followers", params=params)
        assert response.status_code == 200
        body = response.json()
        assert len(body["items"]) <= 10
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(fans)

    followees = (await network.client.get("/internal/v1/users/star/followees")).json()
    assert sorted(followees["items"]) == ["fan03", "other"]
    count = (await network.client.get("/internal/v1/users/star/follower-count")).json()
    assert count == {"count": 25}
    lonely = (await network.client.get("/internal/v1/users/other/followers")).json()
    assert lonely == {"items": ["star"], "next_cursor": None}
    assert (await network.client.get("/internal/v1/users/other/followees")).json() == {"items": []}


@pytest.mark.parametrize("suffix", ["followers", "followees", "follower-count"])
async def test_unknown_user_is_404(network: NetworkHarness, suffix: str) -> None:
    response = await network.client.get(f"/internal/v1/users/ghost/{suffix}")
    assert response.status_code == 404


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 10_001}, {"cursor": "%%%"}, {"cursor": "e30"}]
)
async def test_bad_paging_is_422(
    network: NetworkHarness, graph_driver: AsyncDriver, params: dict[str, Any]
) -> None:
    await seed_users(graph_driver, "star")
    response = await network.client.get("/internal/v1/users/star/followers", params=params)
    assert response.status_code == 422


FOLLOWERS = 100_000


async def test_paging_100k_followers_is_fast(
    network: NetworkHarness, graph_driver: AsyncDriver
) -> None:
    await seed_users(graph_driver, "celebrity")
    for start in range(0, FOLLOWERS, 25_000):
        await graph_driver.execute_query(
            """
            MATCH (star:User {id: 'celebrity'})
            UNWIND range($start, $end - 1) AS i
            CREATE (:User {id: 'fan-' + toString(i), username: 'fan' + toString(i),
                           display_name: 'Fan', profile_at: 0})
                   -[:FOLLOWS {since: i, follower_id: 'fan-' + toString(i),
                               followee_id: 'celebrity'}]->(star)
            """,
            start=start,
            end=start + 25_000,
            database_="neo4j",
        )

    started = time.perf_counter()
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10_000}
        if cursor:
            params["cursor"] = cursor
        body = (
            await network.client.get("/internal/v1/users/celebrity/followers", params=params)
        ).json()
        pages += 1
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    elapsed = time.perf_counter() - started
    print(f"paged {len(seen)} followers in {pages} pages: {elapsed:.2f} s")

    assert len(seen) == FOLLOWERS and len(set(seen)) == FOLLOWERS
    assert pages == 10
    # Generous for a shared 2-core machine; typically well under this.
    # A loose bound against pathological paging (an unindexed scan takes minutes); the speed
    # itself is a benchmark figure (about 2 s on the development machine).
    assert elapsed < 60, f"paging 100k followers took {elapsed:.2f} s"
    count = (await network.client.get("/internal/v1/users/celebrity/follower-count")).json()
    assert count == {"count": FOLLOWERS}
    # Leave no 100k-node graph behind for whichever test uses the database next.
    await clear_graph(graph_driver)


async def test_neo4j_down_gives_503_with_retry_after(
    vhost_url: str, redis_url: str, tokens: TokenFactory
) -> None:
    settings: NetworkSettings = make_settings(
        f"bolt://127.0.0.1:{free_port()}",
        vhost_url,
        redis_url,
        run_workers=False,
        neo4j_max_retry_time_s=0.5,
        neo4j_connection_timeout_s=0.5,
        neo4j_startup_wait_s=0.1,
    )
    async with running_app(settings, tokens) as net:
        for method, path in [
            ("GET", "/api/v1/users/x/followers"),
            ("GET", "/api/v1/users/x/relationship"),
            ("PUT", "/api/v1/me/following/x"),
            ("GET", "/internal/v1/users/x/followees"),
        ]:
            headers = {**net.auth("me"), **internal_headers(settings)}
            response = await net.client.request(method, path, headers=headers)
            assert response.status_code == 503, (path, response.text)
            assert int(response.headers["retry-after"]) > 0
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "bolt" not in response.text and "127.0.0.1" not in response.text
        ready = await net.client.get("/readyz")
        assert ready.status_code == 503
        assert "neo4j" in ready.text
