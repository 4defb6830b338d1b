"""Rate limiting on Redis with ``limits`` (moving window); over the limit raises 429."""

from __future__ import annotations

import math
import time
from functools import lru_cache
from typing import Any

import redis.asyncio as redis
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from common.errors import TooManyRequests
from common.redis_client import connection_pool

__all__ = ["RateLimiter"]


@lru_cache(maxsize=256)
def _rule(rule: str) -> RateLimitItem:
    return parse(rule)


class RateLimiter:
    """``await limiter.hit("5/minute", "login", client_ip)`` raises ``TooManyRequests``.

    A moving window, so a burst at a window boundary cannot double the allowance.
    """

    def __init__(self, redis_url: str, *, key_prefix: str = "murmur:ratelimit") -> None:
        # The storage runs on this pool, so its connections get the shared timeouts, health
        # checks and retries (limits' own defaults have none).
        self._pool: redis.ConnectionPool = connection_pool(redis_url)
        storage_url = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
        self._storage = RedisStorage(
            storage_url,
            implementation="redispy",
            key_prefix=key_prefix,
            connection_pool=self._pool,  # type: ignore[arg-type]
        )
        self._limiter = MovingWindowRateLimiter(self._storage)

    async def hit(self, rule: str, *identifiers: str) -> None:
        """Count one hit of ``rule`` (``limits`` notation) for ``identifiers``."""
        item = _rule(rule)
        if await self._limiter.hit(item, *identifiers):
            return
        stats = await self._limiter.get_window_stats(item, *identifiers)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests("Rate limit exceeded, retry later", retry_after=retry_after)

    async def reset(self, rule: str, *identifiers: str) -> None:
        """Forget the hits of ``rule`` for ``identifiers`` (e.g. after a successful login)."""
        await self._limiter.clear(_rule(rule), *identifiers)

    async def ping(self) -> None:
        """Raises when the limiter's Redis does not answer (a readiness check)."""
        client: Any = redis.Redis(connection_pool=self._pool)  # redis-py's sync|async typing
        if not await client.ping():
            raise ConnectionError("rate-limit Redis did not answer PING")

    async def close(self) -> None:
        await self._pool.disconnect()
