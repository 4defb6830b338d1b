"""Rate limits on follow and unfollow: per follower and per client address."""

from __future__ import annotations

from typing import Any

import httpx
from neo4j import AsyncDriver

from tests.network_service.conftest import make_settings, running_app
from tests.network_service.test_follow_api import seed_users
from tests.support.jwt import TokenFactory


def assert_429(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1


async def test_follows_are_limited_per_follower_and_per_client(
    neo4j: Any, graph_driver: AsyncDriver, vhost_url: str, redis_url: str, tokens: TokenFactory
) -> None:
    await seed_users(graph_driver, "ann", "ben", "cat", "dan", "eve")
    settings = make_settings(
        neo4j.bolt_uri,
        vhost_url,
        redis_url,
        run_workers=False,
        rate_follow_user="2/hour",
        rate_write_ip="5/hour",
    )
    async with running_app(settings, tokens) as net:
        ann, ben = net.auth("ann"), net.auth("ben")
        assert (await net.client.put("/api/v1/me/following/cat", headers=ann)).status_code == 204
        # An unfollow spends the allowance too: follow/unfollow churn is the abuse.
        assert (await net.client.delete("/api/v1/me/following/cat", headers=ann)).status_code == 204
        assert_429(await net.client.put("/api/v1/me/following/dan", headers=ann))
        elsewhere = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=net.app, client=("198.51.100.9", 1)),
            base_url="http://network.test",
        )
        async with elsewhere:
            assert_429(await elsewhere.put("/api/v1/me/following/dan", headers=ann))
            # Ben, same address as ann: two more writes fit in the address's five.
            for followee in ("cat", "dan"):
                r = await net.client.put(f"/api/v1/me/following/{followee}", headers=ben)
                assert r.status_code == 204
            eve = net.auth("eve")
            assert_429(await net.client.put("/api/v1/me/following/cat", headers=eve))
            assert (await elsewhere.put("/api/v1/me/following/cat", headers=eve)).status_code == 204
