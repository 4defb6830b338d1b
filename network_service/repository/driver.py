"""The Neo4j driver and managed-transaction helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Concatenate, ParamSpec, TypeVar

from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction
from opentelemetry import trace
from opentelemetry.trace import Span

from network_service.settings import NetworkSettings

__all__ = ["Graph", "create_driver"]

P = ParamSpec("P")
R = TypeVar("R")

# No maintained instrumentation exists for the Neo4j driver: a span per transaction function
# (retries of a transient failure included) is what an operator needs to see a slow query.
_tracer = trace.get_tracer("network_service.neo4j")

TxWork = Callable[Concatenate[AsyncManagedTransaction, P], Awaitable[R]]


def create_driver(settings: NetworkSettings) -> AsyncDriver:
    password = settings.neo4j_password.get_secret_value()
    return AsyncGraphDatabase.driver(
        settings.neo4j_uri,
        auth=(settings.neo4j_user, password) if password else None,
        max_transaction_retry_time=settings.neo4j_max_retry_time_s,
        connection_timeout=settings.neo4j_connection_timeout_s,
        connection_acquisition_timeout=settings.neo4j_connection_timeout_s * 2,
        # Informational notices ("constraint already exists") would flood the logs.
        notifications_min_severity="WARNING",
    )


class Graph:
    """Runs transaction functions in managed transactions (retried on transient errors).

    A transaction function may run more than once, so it must not have side effects outside
    the transaction.
    """

    def __init__(self, driver: AsyncDriver, database: str) -> None:
        self.driver = driver
        self.database = database

    async def read(self, work: TxWork[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        with self._span("read", work):
            async with self.driver.session(database=self.database) as session:
                return await session.execute_read(work, *args, **kwargs)

    async def write(self, work: TxWork[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        with self._span("write", work):
            async with self.driver.session(database=self.database) as session:
                return await session.execute_write(work, *args, **kwargs)

    def _span(self, mode: str, work: Callable[..., Any]) -> AbstractContextManager[Span]:
        # The qualified name: a closure is named after its caller ("FollowService.follow.work").
        name = getattr(work, "__qualname__", type(work).__qualname__).replace(".<locals>", "")
        return _tracer.start_as_current_span(
            f"neo4j.{mode} {name}",
            kind=trace.SpanKind.CLIENT,
            attributes={"db.system": "neo4j", "db.namespace": self.database},
        )
