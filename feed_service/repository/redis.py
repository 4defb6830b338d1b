"""The Redis client: a single node or a Redis Cluster, behind one type."""

from __future__ import annotations

from typing import Any, TypeAlias

from common.redis_client import RedisOptions
from common.redis_client import connect_redis as _connect

__all__ = ["RedisClient", "close_redis", "connect_redis"]

# redis-py types every command for sync and async, bytes and str clients at once (results
# like ``Awaitable[list[bytes | str]] | list[bytes | str]``), which no call site can use
# without casts. Both clients here are async with decoded str responses and the same command
# API, so the code treats them as one untyped client and normalises results where it reads them.
RedisClient: TypeAlias = Any


def connect_redis(url: str, *, cluster: bool = False, block_ms: int = 0) -> RedisClient:
    """A client with decoded (str) responses; ``cluster`` selects RedisCluster.

    ``block_ms`` is the longest blocking read (SSE's XREAD): the socket timeout must outlast
    it, or a quiet stream would look like a dead connection.
    """
    options = RedisOptions()
    timeout_s = max(options.socket_timeout_s, block_ms / 1000 + 2.0)
    return _connect(
        url,
        cluster=cluster,
        decode_responses=True,
        options=RedisOptions(socket_timeout_s=timeout_s),
    )


async def close_redis(client: RedisClient) -> None:
    await client.aclose()
