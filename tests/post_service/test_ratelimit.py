"""Rate limits on posting, commenting and liking: per author and per client address."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager

from post_service.app import create_app
from tests.post_service.conftest import PostHarness, make_settings
from tests.support.jwt import TokenFactory
from tests.support.server import free_port


@asynccontextmanager
async def limited_post(
    database_url: str, redis_url: str, tokens: TokenFactory, **rules: str
) -> AsyncIterator[tuple[PostHarness, Callable[[str], httpx.AsyncClient]]]:
    """post_service with ``rules``, and a factory of clients at other addresses."""
    app = create_app(make_settings(database_url, redis_url, **rules))
    app.state.token_verifier = tokens.verifier()
    async with LifespanManager(app) as manager:
        clients: list[httpx.AsyncClient] = []

        def client_at(ip: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=manager.app, client=(ip, 40000))
            clients.append(httpx.AsyncClient(transport=transport, base_url="http://post.test"))
            return clients[-1]

        try:
            yield PostHarness(app, client_at("192.0.2.1"), tokens), client_at
        finally:
            for client in clients:
                await client.aclose()


def assert_429(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert 1 <= int(response.headers["retry-after"]) <= 3600


async def create(client: httpx.AsyncClient, auth: dict[str, str], content: str) -> httpx.Response:
    return await client.post("/api/v1/posts", json={"content": content}, headers=auth)


async def test_posting_is_limited_per_author(
    post_database: str, redis_url: str, tokens: TokenFactory
) -> None:
    async with limited_post(post_database, redis_url, tokens, rate_post_user="2/hour") as (
        post,
        client_at,
    ):
        alice, bob = post.user(), post.user()
        for n in range(2):
            assert (await create(post.client, alice.auth, f"post {n}")).status_code == 201
        # From anywhere: the author is the key.
        assert_429(await create(client_at("192.0.2.77"), alice.auth, "one too many"))
        assert (await create(post.client, bob.auth, "bob is not limited")).status_code == 201
        assert await post.scalar("SELECT count(*) FROM posts") == 3


async def test_commenting_and_liking_are_limited_per_author(
    post_database: str, redis_url: str, tokens: TokenFactory
) -> None:
    async with limited_post(
        post_database, redis_url, tokens, rate_comment_user="1/hour", rate_like_user="2/hour"
    ) as (post, _):
        alice, bob = post.user(), post.user()
        p = await post.post(alice, "hello")
        comments = f"/api/v1/posts/{p['id']}/comments"
        like = f"/api/v1/posts/{p['id']}/like"
        r = await post.client.post(comments, json={"content": "first"}, headers=bob.auth)
        assert r.status_code == 201
        assert_429(await post.client.post(comments, json={"content": "again"}, headers=bob.auth))
        # Like then unlike spend one allowance: toggling is what floods notifications.
        assert (await post.client.put(like, headers=bob.auth)).status_code == 204
        assert (await post.client.delete(like, headers=bob.auth)).status_code == 204
        assert_429(await post.client.put(like, headers=bob.auth))
        assert (await post.client.put(like, headers=alice.auth)).status_code == 204


async def test_writes_are_limited_per_client_address(
    post_database: str, redis_url: str, tokens: TokenFactory
) -> None:
    async with limited_post(post_database, redis_url, tokens, rate_write_ip="3/hour") as (
        post,
        client_at,
    ):
        users = [post.user() for _ in range(4)]
        p = await post.post(users[0], "one")
        assert (await create(post.client, users[1].auth, "two")).status_code == 201
        r = await post.client.put(f"/api/v1/posts/{p['id']}/like", headers=users[2].auth)
        assert r.status_code == 204
        # A fourth account from the same address is stopped; from another address it is not.
        assert_429(await create(post.client, users[3].auth, "four"))
        assert (await create(client_at("198.51.100.4"), users[3].auth, "four")).status_code == 201


async def test_a_redis_outage_does_not_stop_posting(
    post_database: str, tokens: TokenFactory
) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    async with limited_post(post_database, down, tokens, rate_post_user="1/hour") as (post, _):
        alice = post.user()
        for n in range(3):
            assert (await create(post.client, alice.auth, f"post {n}")).status_code == 201


async def test_empty_rules_switch_the_limits_off(
    post_database: str, redis_url: str, tokens: TokenFactory
) -> None:
    async with limited_post(
        post_database, redis_url, tokens, rate_post_user="", rate_write_ip=""
    ) as (post, _):
        alice = post.user()
        for n in range(5):
            assert (await create(post.client, alice.auth, f"post {n}")).status_code == 201
