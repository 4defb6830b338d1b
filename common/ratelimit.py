"""Rate limiting on Redis with ``limits`` (moving window); over the limit raises 429."""

from __future__ import annotations

import ipaddress
import math
import time
from functools import lru_cache
from typing import Annotated, Any

import redis.asyncio as redis
from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.errors import TooManyRequests
from common.logging import get_logger
from common.redis_client import connection_pool

__all__ = ["ClientIP", "RateLimiter", "client_ip", "client_key"]

log = get_logger(__name__)

# What fail-open lets through; the rest (and, without fail_open, these too) reaches the
# problem handlers, which answer 503 for a dependency that is down.
_REDIS_DOWN = (OSError, RedisConnectionError, RedisTimeoutError)


@lru_cache(maxsize=256)
def _rule(rule: str) -> RateLimitItem:
    return parse(rule)


def client_key(ip: str) -> str:
    """The bucket of a client address: the address itself, or its /64 for IPv6.

    One IPv6 subscriber usually holds a whole /64, so per-address buckets would be free to
    multiply (Mastodon's Rack::Attack masks to /64 for the same reason).
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False).network_address) + "/64"
    return str(address)


async def client_ip(request: Request) -> str:
    """The client's address as the request gives it.

    Behind the gateway, uvicorn's proxy-headers support has already replaced the peer (the
    gateway) with the client named in ``X-Forwarded-For`` by a trusted proxy.
    """
    return request.client.host if request.client else "unknown"


ClientIP = Annotated[str, Depends(client_ip)]


class RateLimiter:
    """``await limiter.hit("5/minute", "login", client_ip)`` raises ``TooManyRequests``.

    A moving window, so a burst at a window boundary cannot double the allowance. An empty rule
    means "no limit" (how a benchmark switches one off). With ``fail_open`` a Redis outage lets
    the hit through (logged) instead of answering 503: for limits that only curb abuse, where
    the write itself does not need Redis.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        key_prefix: str = "murmur:ratelimit",
        fail_open: bool = False,
    ) -> None:
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
        self._fail_open = fail_open

    async def hit(self, rule: str, *identifiers: str) -> None:
        """Count one hit of ``rule`` (``limits`` notation) for ``identifiers``."""
        if not rule.strip():
            return
        item = _rule(rule)
        try:
            if await self._limiter.hit(item, *identifiers):
                return
            stats = await self._limiter.get_window_stats(item, *identifiers)
        except _REDIS_DOWN as exc:
            if not self._fail_open:
                raise
            log.warning("ratelimit_unavailable", bucket=identifiers[0], error=type(exc).__name__)
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests("Rate limit exceeded, retry later", retry_after=retry_after)

    async def reset(self, rule: str, *identifiers: str) -> None:
        """Forget the hits of ``rule`` for ``identifiers`` (e.g. after a successful login)."""
        if rule.strip():
            await self._limiter.clear(_rule(rule), *identifiers)

    async def ping(self) -> None:
        """Raises when the limiter's Redis does not answer (a readiness check)."""
        client: Any = redis.Redis(connection_pool=self._pool)  # redis-py's sync|async typing
        if not await client.ping():
            raise ConnectionError("rate-limit Redis did not answer PING")

    async def close(self) -> None:
        await self._pool.disconnect()
