"""Parallel fan-out: a post's followers are split into batches that competing workers write.

The post.created handler publishes one message per batch to the durable quorum queue
``feed.fanout`` (through the default exchange, mandatory and confirmed, so no batch is lost);
every feed worker consumes that queue with a bounded prefetch, so a post to 100,000 followers
is spread over all of them. Batch ids are deterministic (post id, operation, batch number over
the sorted follower list) and writing a batch is idempotent (ZADD/ZREM of the same member), so
a redelivered post.created or batch changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Final, Literal

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict

from common.logging import get_logger
from common.messaging.consumer import run_until_cancelled
from common.messaging.topology import DLX
from feed_service.service.feed_manager import Entry, FeedManager

__all__ = ["FANOUT_QUEUE", "FanoutBatch", "FanoutPublisher", "FanoutWorker"]

FANOUT_QUEUE: Final = "feed.fanout"
FANOUT_DEAD: Final = "feed.fanout.dead"
_DELIVERY_LIMIT: Final = 10

_log = get_logger("feed_service.fanout")
# Inside aio-pika's consumer span: the batch message carries the post.created handler's
# trace in its AMQP headers, so every batch of a post shows in the post's trace.
_tracer = trace.get_tracer("feed_service.fanout")


class FanoutBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    op: Literal["add", "remove"]
    user_ids: list[str]
    entries: list[tuple[str, int]] = []
    members: list[str] = []


async def _declare(channel: AbstractChannel) -> AbstractQueue:
    dlx = await channel.declare_exchange(DLX, aio_pika.ExchangeType.DIRECT, durable=True)
    dead = await channel.declare_queue(
        FANOUT_DEAD, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead.bind(dlx, routing_key=FANOUT_DEAD)
    return await channel.declare_queue(
        FANOUT_QUEUE,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": _DELIVERY_LIMIT,
            "x-dead-letter-exchange": DLX,
            "x-dead-letter-routing-key": FANOUT_DEAD,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )


_PUBLISH_WINDOW = 16


class FanoutPublisher:
    """Splits a fan-out into batches and publishes them with confirms."""

    def __init__(self, amqp_url: str, *, batch_size: int, timeout: float = 10.0) -> None:
        self._url = amqp_url
        self._batch_size = batch_size
        self._timeout = timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> AbstractChannel:
        async with self._lock:
            if self._channel is None:
                connection = await aio_pika.connect_robust(self._url, timeout=self._timeout)
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                await _declare(channel)
                self._connection, self._channel = connection, channel
            return self._channel

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            await connection.close()

    def split(
        self,
        key: str,
        op: Literal["add", "remove"],
        user_ids: Sequence[str],
        *,
        entries: Sequence[Entry] = (),
        members: Sequence[str] = (),
    ) -> list[FanoutBatch]:
        return [
            FanoutBatch(
                id=f"{key}:{op}:{n}",
                op=op,
                user_ids=list(user_ids[start : start + self._batch_size]),
                entries=list(entries),
                members=list(members),
            )
            for n, start in enumerate(range(0, len(user_ids), self._batch_size))
        ]

    async def publish(self, batches: Sequence[FanoutBatch]) -> None:
        channel = await self.connect()

        async def one(b: FanoutBatch) -> None:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    b.model_dump_json().encode(),
                    message_id=b.id,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=FANOUT_QUEUE,
                mandatory=True,
                timeout=self._timeout,
            )

        try:
            # A bounded window of unconfirmed publishes: each publish's timeout covers its own
            # wait for the channel, so 100 batches started at once (a 100k-follower post) no
            # longer share one 10 s budget queued behind a single channel lock.
            for start in range(0, len(batches), _PUBLISH_WINDOW):
                await asyncio.gather(*(one(b) for b in batches[start : start + _PUBLISH_WINDOW]))
        except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError) as exc:
            # Not confirmed: the post.created handler fails transiently and is retried; the
            # batches it already published are idempotent.
            raise ConnectionError(f"fan-out batch publish not confirmed: {exc!r}") from exc


class FanoutWorker:
    """One competing consumer of ``feed.fanout``; counts what it wrote (for tests/metrics)."""

    def __init__(self, amqp_url: str, feeds: FeedManager, *, prefetch: int, name: str) -> None:
        self._url = amqp_url
        self._feeds = feeds
        self._prefetch = prefetch
        self.name = name
        self.batches = 0
        self.deliveries = 0
        self._connection: AbstractRobustConnection | None = None

    @property
    def started(self) -> bool:
        return self._connection is not None

    async def start(self) -> None:
        connection = await aio_pika.connect_robust(self._url)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self._prefetch)
            # Declared (not looked up) on the robust channel: only a queue the channel declared
            # is re-declared, and its consumer re-subscribed, after a broker restart.
            queue = await _declare(channel)
            await queue.consume(self._on_message)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection

    async def stop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def run_forever(self) -> None:
        # The logger: a broker that stays unreachable must show in the logs, not only in lag.
        await run_until_cancelled(self.start, self.stop, _log.bind(worker=self.name))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            batch = FanoutBatch.model_validate_json(message.body)
        except ValueError:
            await message.reject(requeue=False)  # dead-lettered: nothing can handle it
            return
        try:
            with _tracer.start_as_current_span(
                "fanout.batch",
                attributes={
                    "murmur.fanout.batch": batch.id,
                    "murmur.fanout.op": batch.op,
                    "murmur.fanout.followers": len(batch.user_ids),
                },
            ):
                if batch.op == "add":
                    written = await self._feeds.insert(batch.user_ids, batch.entries)
                else:
                    await self._feeds.remove(batch.user_ids, batch.members)
                    written = len(batch.user_ids)
        except Exception as exc:
            _log.warning("fanout_batch_failed", batch=batch.id, error=type(exc).__name__)
            # Requeued; the quorum queue's delivery limit dead-letters a batch that keeps failing.
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        await message.ack()
        self.batches += 1
        self.deliveries += written
