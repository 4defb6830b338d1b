"""The one way Murmur builds Redis clients: clients that survive a Redis restart or failover.

redis-py's defaults do not: a client made by ``from_url`` retries nothing, has no socket
timeout (a command on a half-open connection waits forever) and no health check (a pooled
connection whose server went away fails the first command that takes it). Every service, and
the ``limits`` storage of :mod:`common.ratelimit`, takes its connections from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["RedisOptions", "connect_redis", "connection_options", "connection_pool"]


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How long a command may take and how a failed one is retried.

    A command that finds its connection dead (reset, closed, timed out) reconnects and is
    retried ``retries`` times with jittered exponential back-off, about
    ``backoff_cap_s * retries`` at most, so a restart shorter than that is invisible and a
    longer outage still fails fast enough for a 503 within an HTTP request's budget.
    """

    socket_timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    # An idle pooled connection is PINGed before reuse after this long, so one whose server
    # vanished is replaced before a command depends on it.
    health_check_interval_s: int = 10
    retries: int = 3
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 1.0


DEFAULT_OPTIONS = RedisOptions()


def connection_options(options: RedisOptions = DEFAULT_OPTIONS) -> dict[str, Any]:
    """Keyword arguments for a redis-py client, pool or connection (also ``limits``)."""
    return {
        "socket_timeout": options.socket_timeout_s,
        "socket_connect_timeout": options.connect_timeout_s,
        "socket_keepalive": True,
        "health_check_interval": options.health_check_interval_s,
        "retry": Retry(
            ExponentialWithJitterBackoff(base=options.backoff_base_s, cap=options.backoff_cap_s),
            options.retries,
        ),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError],
    }


def connection_pool(
    url: str, *, decode_responses: bool = False, options: RedisOptions = DEFAULT_OPTIONS
) -> ConnectionPool:
    """A pool whose every connection has the options above (for clients built on a pool)."""
    return ConnectionPool.from_url(
        url, decode_responses=decode_responses, **connection_options(options)
    )


def connect_redis(
    url: str,
    *,
    cluster: bool = False,
    decode_responses: bool = False,
    options: RedisOptions = DEFAULT_OPTIONS,
) -> Any:
    """A ``redis.asyncio`` client (``RedisCluster`` when ``cluster``) with the options above.

    Typed ``Any``: redis-py types every command for sync and async clients at once, which no
    call site can use without casts (see feed_service.repository.redis).
    """
    if cluster:
        return RedisCluster.from_url(
            url, decode_responses=decode_responses, **connection_options(options)
        )
    # from_url gives the client its own pool (closed with the client) built with these options.
    return Redis.from_url(url, decode_responses=decode_responses, **connection_options(options))
