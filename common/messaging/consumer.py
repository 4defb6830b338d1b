"""The event consumer: ``<service>.events`` dispatched to the service's :class:`EventHandlers`.

A consumer acks only after its handler returned. A transient failure is acked only once a copy
is confirmed in a retry queue, whose TTL dead-letters it back to the main queue (growing delay
per attempt). A poison message is acked only once a copy carrying the error in its headers is
confirmed in the dead queue. Anything in between (a crash, a lost connection) leaves the
message unacked, so the broker delivers it again: handlers must be idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from opentelemetry import trace

from common.events import EventDecodeError, EventEnvelope, consumers_of
from common.failures import is_transient
from common.logging import bind_correlation_id, get_logger
from common.messaging.handlers import EventHandlers
from common.messaging.topology import (
    DEFAULT_RETRY_DELAYS_MS,
    DLX,
    dead_queue_name,
    declare_topology,
    queue_name,
    retry_queue_name,
)
from common.metrics_exporters import record_taken
from common.time import format_timestamp, utcnow

__all__ = ["ATTEMPTS_HEADER", "ERROR_HEADER", "RETRIES_HEADER", "Consumer", "run_until_cancelled"]

ERROR_HEADER: Final = "x-murmur-error"
RETRIES_HEADER: Final = "x-murmur-retries"
ATTEMPTS_HEADER: Final = "x-murmur-attempts"

_log = get_logger(__name__)
# Inside aio-pika's consumer span, which continues the publisher's trace (AMQP headers).
_tracer = trace.get_tracer("common.messaging.consumer")


async def run_until_cancelled(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    log: Any | None = None,
) -> None:
    """Start a consumer, retrying with back-off while the broker is unreachable, then keep it
    running until cancelled and stop it (shielded, so a cancellation cannot cut the stop)."""
    delay = 0.5
    while True:
        try:
            await start()
            break
        except Exception as exc:
            if not is_transient(exc):
                raise
            if log is not None:
                log.warning("consumer_connect_failed", error=_describe(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.shield(stop())


def _header_int(headers: Mapping[str, Any], name: str) -> int:
    value = headers.get(name)
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


class Consumer:
    """Consumes ``<service>.events`` and dispatches each envelope to the handler for its type.

    ``handlers`` holds a coroutine per event type; the consumer binds those routing keys, parses
    and validates each payload once and hands it over. A handler that returns has handled the
    message (ack). Transient failures (:func:`common.failures.is_transient`: a dependency down
    or busy, ``TransientError``) are retried with growing delay until ``delivery_limit``
    attempts; anything else, and a message no handler can take (unknown type, invalid data), is
    dead-lettered at once with the error in the ``x-murmur-error`` header.
    """

    def __init__(
        self,
        amqp_url: str,
        *,
        service: str,
        handlers: EventHandlers,
        prefetch: int = 32,
        delivery_limit: int = 10,
        retry_delays_ms: Sequence[int] = DEFAULT_RETRY_DELAYS_MS,
        stop_timeout: float = 30.0,
        reconnect_interval: float = 2.0,
    ) -> None:
        if not retry_delays_ms:
            raise ValueError("retry_delays_ms must not be empty")
        self._url = amqp_url
        self.service = service
        self._handlers = handlers
        self._prefetch = prefetch
        self._delivery_limit = delivery_limit
        self._retry_delays = list(retry_delays_ms)
        self._stop_timeout = stop_timeout
        self._reconnect_interval = reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._dlx: AbstractExchange | None = None
        self._consumer_tag: str | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._log = _log.bind(service=service)

    @property
    def connection(self) -> AbstractRobustConnection | None:
        return self._connection

    @property
    def running(self) -> bool:
        """Topology declared and consuming (a readiness check can use this)."""
        return self._consumer_tag is not None

    async def start(self) -> None:
        """Connect, declare the topology for the handled event types and start consuming."""
        if self._connection is not None:
            return
        connection = await aio_pika.connect_robust(
            self._url, reconnect_interval=self._reconnect_interval
        )
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await declare_topology(
                channel,
                self.service,
                self._handlers.event_types,
                delivery_limit=self._delivery_limit,
                retry_delays_ms=self._retry_delays,
            )
            dlx = await channel.get_exchange(DLX)
            self._connection, self._channel = connection, channel
            self._queue, self._dlx = queue, dlx
            # The robust channel re-declares all of this and re-subscribes after a reconnect.
            self._consumer_tag = await queue.consume(self._on_message)
        except BaseException:
            self._connection = self._channel = self._queue = self._dlx = None
            await connection.close()
            raise
        self._log.info("consumer_started", queue=queue.name, types=self._handlers.event_types)
        unlisted = [t for t in self._handlers.event_types if self.service not in consumers_of(t)]
        if unlisted:
            # Relays would drop these while this queue is missing (common.events.CONSUMERS).
            self._log.warning("consumer_not_in_consumers_table", types=unlisted)

    async def stop(self) -> None:
        """Stop taking messages, let in-flight handlers finish (bounded), then disconnect."""
        queue, tag = self._queue, self._consumer_tag
        self._consumer_tag = None
        if queue is not None and tag is not None:
            with contextlib.suppress(Exception):
                await queue.cancel(tag, timeout=5)
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=self._stop_timeout)
            for task in pending:
                task.cancel()
        connection = self._connection
        self._connection = self._channel = self._queue = self._dlx = None
        if connection is not None:
            await connection.close()
        self._log.info("consumer_stopped")

    async def run_forever(self) -> None:
        """Start (retrying while RabbitMQ is unreachable) and consume until cancelled."""
        await run_until_cancelled(self.start, self.stop, self._log)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._process(message)
        except Exception as exc:
            # Settling failed (connection lost, retry/dead queue missing). Hand the message
            # back so it is redelivered (counting towards the delivery limit) instead of
            # holding a prefetch slot; on a dead channel the broker requeues it anyway.
            self._log.warning(
                "message_settle_failed", message_id=message.message_id, error=_describe(exc)
            )
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        if RETRIES_HEADER not in (message.headers or {}):
            # A retried copy keeps its first publish time and skips the queue's order.
            record_taken(queue_name(self.service), message.timestamp)
        try:
            envelope = EventEnvelope.from_json_bytes(message.body)
            # Validated here, once: bad data is refused before a handler half-applies it.
            handler, payload = self._handlers.resolve(envelope)
        except EventDecodeError as exc:
            await self._dead_letter(message, exc)
            return

        # Each delivery runs in its own task (own context copy), so this binding cannot leak
        # into another message's logs.
        bind_correlation_id(envelope.correlation_id or envelope.id)
        with (
            structlog.contextvars.bound_contextvars(event_id=envelope.id, event_type=envelope.type),
            _tracer.start_as_current_span(
                f"handle {envelope.type}",
                attributes={"messaging.message.id": envelope.id, "murmur.consumer": self.service},
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
        ):
            try:
                await handler(payload, envelope)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR, _describe(exc)[:200])
                if is_transient(exc):
                    await self._retry(message, exc)
                else:
                    await self._dead_letter(message, exc)
                return
            await message.ack()

    def _attempts(self, message: AbstractIncomingMessage) -> int:
        headers = message.headers or {}
        # A retry republishes a copy, which starts a new broker delivery count: the copy
        # carries the attempts made before it, the broker counts redeliveries since.
        return _header_int(headers, ATTEMPTS_HEADER) + _header_int(headers, "x-delivery-count") + 1

    async def _retry(self, message: AbstractIncomingMessage, exc: BaseException) -> None:
        attempts = self._attempts(message)
        if attempts >= self._delivery_limit:
            await self._dead_letter(
                message, exc, reason=f"delivery limit {self._delivery_limit} reached"
            )
            return
        retries = _header_int(message.headers or {}, RETRIES_HEADER)
        delay = self._retry_delays[min(retries, len(self._retry_delays) - 1)]
        headers = dict(message.headers or {})
        headers.pop("x-death", None)  # grows with every round trip otherwise
        headers.pop("x-delivery-count", None)
        headers[RETRIES_HEADER] = retries + 1
        headers[ATTEMPTS_HEADER] = attempts
        headers[ERROR_HEADER] = _describe(exc)
        assert self._channel is not None
        await self._channel.default_exchange.publish(
            self._copy(message, headers),
            routing_key=retry_queue_name(self.service, delay),
            mandatory=True,
        )
        await message.ack()
        self._log.warning(
            "event_retry_scheduled",
            message_id=message.message_id,
            attempt=attempts,
            delay_ms=delay,
            error=_describe(exc),
        )

    async def _dead_letter(
        self, message: AbstractIncomingMessage, exc: BaseException, *, reason: str | None = None
    ) -> None:
        headers = dict(message.headers or {})
        error = _describe(exc) if reason is None else f"{reason}: {_describe(exc)}"
        headers[ERROR_HEADER] = error
        headers["x-murmur-failed-at"] = format_timestamp(utcnow())
        headers["x-murmur-consumer"] = self.service
        headers["x-murmur-routing-key"] = message.routing_key or ""
        assert self._dlx is not None
        await self._dlx.publish(
            self._copy(message, headers),
            routing_key=dead_queue_name(self.service),
            mandatory=True,
        )
        await message.ack()
        self._log.error(
            "event_dead_lettered",
            message_id=message.message_id,
            routing_key=message.routing_key,
            error=error,
        )

    @staticmethod
    def _copy(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
        timestamp = message.timestamp if isinstance(message.timestamp, datetime) else None
        return aio_pika.Message(
            message.body,
            headers=headers,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=message.type,
            app_id=message.app_id,
            timestamp=timestamp,
        )
