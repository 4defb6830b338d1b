"""The Redis client: a single node or a Redis Cluster, behind one type."""

from __future__ import annotations

from typing import Any, TypeAlias

from redis.asyncio import Redis, RedisCluster

__all__ = ["RedisClient", "close_redis", "connect_redis"]

# redis-py types every command for sync and async, bytes and str clients at once (results
# like ``Awaitable[list[bytes | str]] | list[bytes | str]``), which no call site can use
# without casts. Both clients here are async with decoded str responses and the same command
# API, so the code treats them as one untyped client and normalises results where it reads them.
RedisClient: TypeAlias = Any


def connect_redis(url: str, *, cluster: bool = False) -> RedisClient:
    """A client with decoded (str) responses; ``cluster`` selects RedisCluster."""
    if cluster:
        return RedisCluster.from_url(url, decode_responses=True)
    return Redis.from_url(url, decode_responses=True)


async def close_redis(client: RedisClient) -> None:
    await client.aclose()
