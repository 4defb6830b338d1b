"""Every rate limit through the gateway, with low limits so the tests are quick.

Two clients are two source addresses on the loopback network (127.0.0.2, 127.0.0.3, ...): the
gateway sees each as its own peer and names it in X-Forwarded-For, which the services believe
from the gateway only. No test sends X-Forwarded-For itself.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from deploy.platform.runner import Platform
from tests.e2e.journey import PASSWORD, bearer, eventually

_prefix = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def platform_env() -> dict[str, str]:
    return {
        # Fresh buckets: the module's platform shares the session's Redis with other modules.
        "AUTH_RATELIMIT_KEY_PREFIX": f"e2e-{_prefix}:auth",
        "POST_RATELIMIT_KEY_PREFIX": f"e2e-{_prefix}:post",
        "NETWORK_RATELIMIT_KEY_PREFIX": f"e2e-{_prefix}:network",
        "AUTH_RATE_REGISTER_IP": "1000/minute",
        "AUTH_RATE_LOGIN_ACCOUNT_CLIENT": "3/minute",
        "AUTH_RATE_PASSWORD_RESET": "2/minute",
        "AUTH_RATE_PASSWORD_RESET_IP": "3/minute",
        "POST_RATE_POST_USER": "3/minute",
        "POST_RATE_COMMENT_USER": "2/minute",
        "POST_RATE_LIKE_USER": "2/minute",
        "NETWORK_RATE_FOLLOW_USER": "2/minute",
        "NETWORK_RATE_WRITE_IP": "4/minute",
    }


_addresses = (f"127.0.0.{n}" for n in itertools.count(2))


@pytest.fixture
async def clients(platform: Platform) -> AsyncIterator[Callable[[], Any]]:
    """``await clients()``: a gateway client from a loopback address no other test uses."""
    async with AsyncExitStack() as stack:

        async def make() -> httpx.AsyncClient:
            transport = httpx.AsyncHTTPTransport(local_address=next(_addresses))
            # Generous: a first Neo4j query on a loaded two-core machine has taken 12 s.
            client = httpx.AsyncClient(
                base_url=platform.gateway_url, transport=transport, timeout=30.0
            )
            return await stack.enter_async_context(client)

        yield make


def assert_429(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["status"] == 429


async def register(gw: httpx.AsyncClient) -> dict[str, Any]:
    name = f"rl{uuid.uuid4().hex[:12]}"
    r = await gw.post(
        "/api/v1/auth/register",
        json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
    )
    assert r.status_code == 201, r.text
    user: dict[str, Any] = r.json()
    return user


async def login(gw: httpx.AsyncClient, login_: str, password: str = PASSWORD) -> httpx.Response:
    return await gw.post("/api/v1/auth/login", json={"login": login_, "password": password})


async def token_of(gw: httpx.AsyncClient, user: dict[str, Any]) -> dict[str, str]:
    r = await login(gw, user["username"])
    assert r.status_code == 200, r.text
    return bearer(r.json()["access_token"])


async def test_one_clients_failures_do_not_lock_the_owner_out(clients: Any) -> None:
    attacker, owner = await clients(), await clients()
    user = await register(owner)
    for _ in range(3):
        assert (await login(attacker, user["username"], "not the password")).status_code == 401
    # The attacker is locked out of the account, whichever spelling it tries...
    assert_429(await login(attacker, user["email"], PASSWORD))
    assert_429(await login(attacker, user["username"].upper(), PASSWORD))
    # ...while the owner's right password from another address still works.
    assert (await login(owner, user["username"], PASSWORD)).status_code == 200
    assert (await login(owner, user["email"], PASSWORD)).status_code == 200


async def test_username_and_email_share_one_bucket(clients: Any) -> None:
    client = await clients()
    user = await register(client)
    spellings = [user["username"], user["email"], user["username"].upper()]
    for spelling in spellings:
        assert (await login(client, spelling, "not the password")).status_code == 401
    for spelling in spellings:
        assert_429(await login(client, spelling, PASSWORD))


async def test_password_reset_is_limited_per_client_and_per_address(clients: Any) -> None:
    first, second, third = await clients(), await clients(), await clients()
    for _ in range(3):
        r = await first.post(
            "/api/v1/auth/password-reset", json={"email": f"{uuid.uuid4().hex}@example.com"}
        )
        assert r.status_code == 202
    assert_429(
        await first.post(
            "/api/v1/auth/password-reset", json={"email": f"{uuid.uuid4().hex}@example.com"}
        )
    )
    address = f"{uuid.uuid4().hex}@example.com"
    for _ in range(2):
        r = await second.post("/api/v1/auth/password-reset", json={"email": address})
        assert r.status_code == 202
    assert_429(await third.post("/api/v1/auth/password-reset", json={"email": address}))


async def test_posting_commenting_and_liking_are_limited_per_user(clients: Any) -> None:
    client = await clients()
    alice = await token_of(client, await register(client))
    bob = await token_of(client, await register(client))
    posts = []
    for n in range(3):
        r = await client.post("/api/v1/posts", json={"content": f"post {n}"}, headers=alice)
        assert r.status_code == 201, r.text
        posts.append(r.json()["id"])
    assert_429(await client.post("/api/v1/posts", json={"content": "one more"}, headers=alice))
    assert (
        await client.post("/api/v1/posts", json={"content": "hi"}, headers=bob)
    ).status_code == 201

    comments = f"/api/v1/posts/{posts[0]}/comments"
    for n in range(2):
        r = await client.post(comments, json={"content": f"c{n}"}, headers=bob)
        assert r.status_code == 201, r.text
    assert_429(await client.post(comments, json={"content": "c2"}, headers=bob))

    like = f"/api/v1/posts/{posts[0]}/like"
    assert (await client.put(like, headers=bob)).status_code == 204
    assert (await client.delete(like, headers=bob)).status_code == 204
    assert_429(await client.put(like, headers=bob))


async def test_following_is_limited_per_user_and_per_client(clients: Any) -> None:
    client, elsewhere = await clients(), await clients()
    users = [await register(client) for _ in range(4)]
    tokens = [await token_of(client, user) for user in users]
    target = users[3]["id"]

    async def known() -> bool:
        r = await client.get(f"/api/v1/users/{target}/followers")
        return r.status_code == 200

    await eventually(known, "network_service to learn the followee", timeout_s=60.0)
    path = f"/api/v1/me/following/{target}"
    # Per user: follow and unfollow spend one allowance.
    assert (await client.put(path, headers=tokens[0])).status_code == 204
    assert (await client.delete(path, headers=tokens[0])).status_code == 204
    assert_429(await client.put(path, headers=tokens[0]))
    # Per client address: the fourth write from this address, by another user, is refused;
    # the same user from another address is not.
    assert (await client.put(path, headers=tokens[1])).status_code == 204
    assert_429(await client.put(path, headers=tokens[2]))
    assert (await elsewhere.put(path, headers=tokens[2])).status_code == 204
