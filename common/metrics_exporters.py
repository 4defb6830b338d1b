"""Gauges the alert rules read that a dependency must be asked for: computed at scrape time.

``/metrics`` refreshes each :class:`ScrapedMetrics` when its values are older than
``max_age_s`` (one query per source per few seconds, however many scrapers), waits at most
``wait_s`` for the refresh and answers with what it has: a dependency that is down or slow
never holds the scrape. A source whose last refresh failed is absent from the answer (no stale
value that could hide a problem; ``murmur_ready`` says the dependency is down).

The metrics (docs/operations.md, "Alerts"):

- ``murmur_ready``: 1 when the process's last ``/readyz`` passed, else 0 (set by ``/readyz``);
- ``murmur_outbox_oldest_unpublished_age_seconds``: age of the oldest unpublished outbox row;
- ``murmur_queue_messages{queue}``: messages ready in each of the service's queues (a passive
  declare's message count);
- ``murmur_queue_oldest_message_age_seconds{queue}``: an upper bound of how long the oldest
  ready message has waited, 0 when the queue is empty (see :class:`QueueMetrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily

from common.logging import get_logger

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "OUTBOX_AGE",
    "QueueMetrics",
    "ScrapedMetrics",
    "outbox_age_metrics",
    "postgres_outbox_age",
    "queue_metrics",
    "ready_gauge",
    "record_taken",
    "refresh_scraped",
    "service_queues",
]

OUTBOX_AGE: Final = "murmur_outbox_oldest_unpublished_age_seconds"
_QUEUE_MESSAGES: Final = "murmur_queue_messages"
_QUEUE_AGE: Final = "murmur_queue_oldest_message_age_seconds"

_log = get_logger(__name__)

Read = Callable[[], Awaitable[list[GaugeMetricFamily]]]


def ready_gauge(registry: CollectorRegistry) -> Gauge:
    """``murmur_ready``: 0 until the first ``/readyz`` passed (a pod nobody probed is unknown)."""
    return Gauge(
        "murmur_ready", "1 when the last /readyz of this process passed, else 0", registry=registry
    )


class ScrapedMetrics:
    """Metric families read from a dependency, cached ``max_age_s``, absent after a failure.

    A prometheus_client collector: register it in the app's registry (``Wiring.metrics``)."""

    def __init__(
        self,
        name: str,
        read: Read,
        *,
        max_age_s: float = 5.0,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self._read = read
        self._close = close
        self._max_age_s = max_age_s
        self._families: list[GaugeMetricFamily] = []
        self._read_at = float("-inf")
        self._task: asyncio.Task[None] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families

    async def aclose(self) -> None:
        """Stop a refresh in flight and release the source's connection (app shutdown)."""
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self._close is not None:
            await self._close()

    def refreshing(self) -> asyncio.Task[None] | None:
        """The refresh in flight, started when the values are older than ``max_age_s``."""
        if self._task is None and time.monotonic() - self._read_at >= self._max_age_s:
            self._task = asyncio.create_task(self._refresh())
        return self._task

    async def _refresh(self) -> None:
        try:
            self._families = await self._read()
        except Exception as exc:
            self._families = []
            _log.warning("metrics_source_failed", source=self.name, error=type(exc).__name__)
        finally:
            self._read_at = time.monotonic()
            self._task = None


async def refresh_scraped(sources: Sequence[ScrapedMetrics], *, wait_s: float = 0.5) -> None:
    """Refresh the stale sources, waiting at most ``wait_s``; a slower refresh goes on and
    serves the next scrape."""
    tasks = {task for source in sources if (task := source.refreshing()) is not None}
    if tasks:
        await asyncio.wait(tasks, timeout=wait_s)


def outbox_age_metrics(
    oldest_age_s: Callable[[], Awaitable[float | None]], *, max_age_s: float = 5.0
) -> ScrapedMetrics:
    """``murmur_outbox_oldest_unpublished_age_seconds`` from ``oldest_age_s`` (None: empty)."""

    async def read() -> list[GaugeMetricFamily]:
        age = await oldest_age_s()
        family = GaugeMetricFamily(
            OUTBOX_AGE, "Seconds since the oldest unpublished outbox row was written; 0 when none"
        )
        family.add_metric([], max(age or 0.0, 0.0))
        return [family]

    return ScrapedMetrics("outbox", read, max_age_s=max_age_s)


def postgres_outbox_age(engine: AsyncEngine, *, max_age_s: float = 5.0) -> ScrapedMetrics:
    """The outbox age of a PostgreSQL outbox (:mod:`common.outbox`), by the database's clock."""
    from sqlalchemy import text

    # Pending rows are few and indexed (ix_outbox_pending_seq is partial on them).
    query = text(
        "SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM outbox WHERE published_at IS NULL"
    )

    async def oldest() -> float | None:
        async with engine.connect() as conn:
            value = await conn.scalar(query)
        return None if value is None else float(value)

    return outbox_age_metrics(oldest, max_age_s=max_age_s)


# Queue -> epoch seconds at which the message this process last took from it was published.
_taken: dict[str, float] = {}


def record_taken(queue: str, published: datetime | None) -> None:
    """Called by the consumer for each message it takes (FIFO: the head is the next one)."""
    if published is not None:
        _taken[queue] = published.timestamp()


def service_queues(service: str, retry_delays_ms: Sequence[int] | None = None) -> list[str]:
    """The queues ``common.messaging.topology.declare_topology`` declares for ``service``."""
    # Imported here, as aio_pika below: building an app must not load the client libraries.
    from common.messaging.topology import (
        DEFAULT_RETRY_DELAYS_MS,
        dead_queue_name,
        queue_name,
        retry_queue_name,
    )

    if retry_delays_ms is None:
        retry_delays_ms = DEFAULT_RETRY_DELAYS_MS
    retries = [retry_queue_name(service, delay) for delay in sorted(set(retry_delays_ms))]
    return [queue_name(service), *retries, dead_queue_name(service)]


def queue_metrics(
    amqp_url: str, service: str, retry_delays_ms: Sequence[int] | None = None
) -> ScrapedMetrics:
    """The queue gauges of the queues ``service`` consumes from (``Wiring.metrics``)."""
    return QueueMetrics(amqp_url, service_queues(service, retry_delays_ms)).metrics


class QueueMetrics:
    """``murmur_queue_messages`` and ``murmur_queue_oldest_message_age_seconds`` of a
    service's queues, by passive declares on a connection of its own.

    RabbitMQ tells no message's age without taking it (a get-and-requeue would count as a
    delivery against the quorum queue's delivery limit), so the age is an upper bound from two
    observations, the smaller one taken: the time since this process last saw the queue empty
    (every ready message arrived after that), and, in a process that consumes the queue, the
    time since the last message it took was published (FIFO: the head was published after
    it). 0 when the queue is empty; before either is known, the time since first seen
    non-empty. A queue that does not exist (yet) is left out.
    """

    def __init__(
        self,
        amqp_url: str,
        queues: Sequence[str],
        *,
        timeout_s: float = 2.0,
        max_age_s: float = 5.0,
    ) -> None:
        self._url = amqp_url
        self._queues = list(queues)
        self._timeout_s = timeout_s
        self._connection: AbstractConnection | None = None
        self._empty_at: dict[str, float] = {}
        self._first_seen: dict[str, float] = {}
        self.metrics = ScrapedMetrics("queues", self.read, max_age_s=max_age_s, close=self.close)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _counts(self) -> dict[str, int]:
        # Imported here: every app builds this module's gauges, and building an app must not
        # load the client libraries (tests/common/test_errors.py).
        import aio_pika

        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect(self._url, timeout=self._timeout_s)
        counts: dict[str, int] = {}
        channel = None
        try:
            for name in self._queues:
                if channel is None or channel.is_closed:
                    channel = await self._connection.channel()
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelClosed:
                    continue  # not declared yet (404 closes the channel)
                counts[name] = int(queue.declaration_result.message_count or 0)
        finally:
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()
        return counts

    async def read(self) -> list[GaugeMetricFamily]:
        try:
            counts = await asyncio.wait_for(self._counts(), self._timeout_s * 2)
        except BaseException:
            await self.close()
            raise
        now = time.time()
        messages = GaugeMetricFamily(
            _QUEUE_MESSAGES, "Messages ready in the queue", labels=["queue"]
        )
        ages = GaugeMetricFamily(
            _QUEUE_AGE,
            "Upper bound of the seconds the oldest ready message has waited; 0 when empty",
            labels=["queue"],
        )
        for name, count in counts.items():
            messages.add_metric([name], count)
            ages.add_metric([name], self._age(name, count, now))
        return [messages, ages]

    def _age(self, name: str, count: int, now: float) -> float:
        if count == 0:
            self._empty_at[name] = now
            self._first_seen.pop(name, None)
            return 0.0
        bounds = [now - at for at in (self._empty_at.get(name), _taken.get(name)) if at is not None]
        if bounds:
            return max(min(bounds), 0.0)
        return now - self._first_seen.setdefault(name, now)
