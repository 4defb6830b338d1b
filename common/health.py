"""Readiness checks: each returns an async callable that raises when its dependency is down."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import aio_pika.abc
    from neo4j import AsyncDriver
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "ReadinessCheck",
    "amqp_check",
    "http_check",
    "neo4j_check",
    "postgres_check",
    "redis_check",
]

ReadinessCheck = Callable[[], Awaitable[None]]
"""Raises when the dependency is down; ``/readyz`` runs it with a timeout."""


def postgres_check(engine: AsyncEngine) -> ReadinessCheck:
    async def check() -> None:
        from sqlalchemy import text

        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return check


def redis_check(client: Any) -> ReadinessCheck:
    """Works for ``redis.asyncio.Redis`` and ``RedisCluster`` alike (both answer PING)."""

    async def check() -> None:
        if not await client.ping():
            raise ConnectionError("redis did not answer PING")

    return check


def amqp_check(
    connection_or_url: aio_pika.abc.AbstractConnection | str, *, timeout_s: float = 2.0
) -> ReadinessCheck:
    """With a connection: it must be open. With a URL: a short connect-and-close."""

    async def check() -> None:
        if isinstance(connection_or_url, str):
            import aio_pika

            connection = await aio_pika.connect(connection_or_url, timeout=timeout_s)
            await connection.close()
            return
        connected: asyncio.Event | None = getattr(connection_or_url, "connected", None)
        if connection_or_url.is_closed or (connected is not None and not connected.is_set()):
            raise ConnectionError("AMQP connection is not open")

    return check


def neo4j_check(driver: AsyncDriver) -> ReadinessCheck:
    async def check() -> None:
        await driver.verify_connectivity()

    return check


def http_check(client: httpx.AsyncClient, url: str) -> ReadinessCheck:
    """The URL must answer below 500 (a 4xx still proves the service is up)."""

    async def check() -> None:
        response = await client.get(url)
        if response.status_code >= 500:
            raise ConnectionError(f"{url} answered {response.status_code}")

    return check
