"""``common.redis_client`` against the real Redis: clients that outlive their connections.

The connections are lost silently (through a proxy that drops them without a FIN or RST, as a
NAT, a load balancer or a moved pod does): the worst case, since the client cannot notice
before it uses them. A server restart the client does see is covered in
tests/feed_service/test_recovery.py and tests/auth_service/test_redis_restart.py.
"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

import pytest

from common.health import redis_check
from common.ratelimit import RateLimiter
from common.redis_client import RedisOptions, connect_redis
from tests.support.tcp_proxy import tcp_proxy

BURST = 16
FAST = RedisOptions(socket_timeout_s=1.0, connect_timeout_s=1.0)


def _via(proxy_port: int, redis_url: str) -> str:
    parts = urlsplit(redis_url)
    return f"redis://127.0.0.1:{proxy_port}{parts.path}"


async def test_a_burst_succeeds_after_every_pooled_connection_was_lost(redis_url: str) -> None:
    upstream = urlsplit(redis_url)
    assert upstream.hostname is not None and upstream.port is not None
    async with tcp_proxy(upstream.hostname, upstream.port) as proxy:
        client = connect_redis(_via(proxy.port, redis_url), options=FAST)
        try:
            keys = [f"recovery:{uuid.uuid4().hex}" for _ in range(BURST)]
            await asyncio.gather(*(client.set(k, "1") for k in keys))
            assert proxy.blackhole() == BURST  # the burst held BURST pooled connections

            async with asyncio.timeout(20):
                values = await asyncio.gather(*(client.get(k) for k in keys))
            assert values == [b"1"] * BURST
            await redis_check(client)()
        finally:
            await client.aclose()


async def test_rate_limiter_survives_lost_connections(redis_url: str) -> None:
    upstream = urlsplit(redis_url)
    assert upstream.hostname is not None and upstream.port is not None
    async with tcp_proxy(upstream.hostname, upstream.port) as proxy:
        limiter = RateLimiter(_via(proxy.port, redis_url), key_prefix=f"t:{uuid.uuid4().hex}")
        try:
            who = [uuid.uuid4().hex for _ in range(BURST)]
            await asyncio.gather(*(limiter.hit("100/minute", "probe", w) for w in who))
            assert proxy.blackhole() >= 1

            async with asyncio.timeout(30):
                await asyncio.gather(*(limiter.hit("100/minute", "probe", w) for w in who))
                await limiter.ping()
        finally:
            await limiter.close()


@pytest.mark.parametrize("cluster", [False])
async def test_options_reach_every_connection(redis_url: str, cluster: bool) -> None:
    client = connect_redis(redis_url, cluster=cluster)
    try:
        await client.ping()
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["health_check_interval"] > 0
        assert kwargs["socket_timeout"] is not None
        assert kwargs["retry"].get_retries() > 0
    finally:
        await client.aclose()
