"""auth_service after a Redis restart: no request fails once Redis is back, readiness notices."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from deploy.local.redis_servers import RedisServer
from tests.auth_service.conftest import PASSWORD, unique


@pytest.fixture
def redis_url(private_redis: RedisServer) -> str:
    """Overrides the session's Redis: this module restarts its own."""
    return private_redis.url


async def _register(client: httpx.AsyncClient) -> int:
    username = unique()
    response = await client.post(
        "/api/v1/auth/register",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    return response.status_code


async def test_registrations_succeed_once_redis_is_back_after_a_restart(
    client: httpx.AsyncClient, private_redis: RedisServer
) -> None:
    burst = 16
    # A concurrent burst leaves `burst` pooled connections open in the rate limiter.
    assert await asyncio.gather(*(_register(client) for _ in range(burst))) == [201] * burst

    await asyncio.to_thread(private_redis.stop)
    down = await client.get("/readyz")
    assert down.status_code == 503, down.text
    await asyncio.to_thread(private_redis.start)

    assert (await client.get("/readyz")).status_code == 200
    statuses = await asyncio.gather(*(_register(client) for _ in range(burst)))
    assert statuses == [201] * burst
