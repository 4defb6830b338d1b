"""The dependency errors every transient-failure path must treat alike (503 / retry)."""

from __future__ import annotations

from collections.abc import Callable

import neo4j.exceptions
import redis.exceptions

# (id, a fresh instance): what a Neo4j or Redis client raises while its server is down, busy,
# failing over or resharding.
TRANSIENT_DEPENDENCY_ERRORS: list[tuple[str, Callable[[], Exception]]] = [
    ("neo4j-transient", lambda: neo4j.exceptions.TransientError("lock wait timeout")),
    ("neo4j-unavailable", lambda: neo4j.exceptions.ServiceUnavailable("no routing servers")),
    ("neo4j-session-expired", lambda: neo4j.exceptions.SessionExpired("leader switched")),
    ("redis-cluster-down", lambda: redis.exceptions.ClusterDownError("CLUSTERDOWN")),
    ("redis-try-again", lambda: redis.exceptions.TryAgainError("TRYAGAIN resharding")),
    ("redis-connection", lambda: redis.exceptions.ConnectionError("connection refused")),
    ("redis-timeout", lambda: redis.exceptions.TimeoutError("timed out reading")),
]
