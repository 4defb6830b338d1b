"""The Redis client: a single node or a Redis Cluster, behind one type."""

from __future__ import annotations

from typing import Any, TypeAlias, cast

from redis.asyncio import Redis, RedisCluster

__all__ = ["RedisClient", "close_redis", "connect_redis"]

# Both clients offer the same command API; the installed stubs describe only Redis fully, so
# the code is typed against it.
RedisClient: TypeAlias = "Redis[str]"


def connect_redis(url: str, *, cluster: bool = False) -> RedisClient:
    """A client with decoded (str) responses; ``cluster`` selects RedisCluster."""
    if cluster:
        return cast("Redis[str]", RedisCluster.from_url(url, decode_responses=True))
    return Redis.from_url(url, decode_responses=True)


async def close_redis(client: RedisClient) -> None:
    await cast(Any, client).aclose()
