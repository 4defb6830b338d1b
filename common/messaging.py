"""RabbitMQ messaging on aio-pika: topology, a confirming publisher and a consumer base.

Topology (RabbitMQ 3.10: every limit is set explicitly, nothing relies on 4.x defaults)::

    murmur.events (topic) --type--> <service>.events (quorum, x-delivery-limit, DLX murmur.dlx)
    <service>.events.retry.<ms> (quorum, TTL <ms>) --dead-letter--> <service>.events
    murmur.dlx (direct) --<service>.events.dead--> <service>.events.dead (quorum)

A consumer acks only after its handler returned. A transient failure is acked only once a copy
is confirmed in a retry queue, whose TTL dead-letters it back to the main queue (growing delay
per attempt). A poison message is acked only once a copy carrying the error in its headers is
confirmed in the dead queue. Anything in between (a crash, a lost connection) leaves the
message unacked, so the broker delivers it again: handlers must be idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import aio_pika
import aiormq.exceptions
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from redis.asyncio import Redis, RedisCluster

from common.events import (
    EVENT_TYPES,
    EventDecodeError,
    EventEnvelope,
    consumers_of,
    parse_payload,
)
from common.failures import PermanentError, TransientError, is_transient
from common.logging import bind_correlation_id, get_logger
from common.time import format_timestamp, utcnow

__all__ = [
    "DLX",
    "ERROR_HEADER",
    "EXCHANGE",
    "Consumer",
    "Handler",
    "PermanentError",
    "Publisher",
    "RoutingBackoff",
    "TransientError",
    "UnroutableError",
    "claim_once",
    "dead_queue_name",
    "declare_topology",
    "has_consumers",
    "is_transient",
    "queue_name",
    "release_claim",
    "retry_queue_name",
]

EXCHANGE: Final = "murmur.events"
DLX: Final = "murmur.dlx"
ERROR_HEADER: Final = "x-murmur-error"
RETRIES_HEADER: Final = "x-murmur-retries"
ATTEMPTS_HEADER: Final = "x-murmur-attempts"
CORRELATION_HEADER: Final = "x-correlation-id"
DEFAULT_RETRY_DELAYS_MS: Final = (1000, 5000, 30000)

_log = get_logger("common.messaging")


class UnroutableError(Exception):
    """The broker returned a mandatory publish: no queue is bound for its routing key."""


def queue_name(service: str) -> str:
    return f"{service}.events"


def dead_queue_name(service: str) -> str:
    return f"{service}.events.dead"


def retry_queue_name(service: str, delay_ms: int) -> str:
    return f"{service}.events.retry.{delay_ms}"


async def declare_topology(
    channel: AbstractChannel,
    service: str,
    routing_keys: Sequence[str],
    *,
    delivery_limit: int = 10,
    retry_delays_ms: Sequence[int] = DEFAULT_RETRY_DELAYS_MS,
) -> AbstractQueue:
    """Declare exchanges, the service's queue with its bindings, retry and dead queues.

    Idempotent; returns the main queue. Queue arguments are fixed at first declaration: changing
    ``delivery_limit`` or the delays later needs the queues deleted (or a policy) first.
    """
    main = queue_name(service)
    dead = dead_queue_name(service)
    # At-least-once dead-lettering (3.10+) needs reject-publish overflow; without it a message
    # dead-lettered by the delivery limit or a retry TTL could be lost in a leader change.
    safe_dead_lettering = {
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }

    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    dlx = await channel.declare_exchange(DLX, aio_pika.ExchangeType.DIRECT, durable=True)
    queue = await channel.declare_queue(
        main,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": DLX,
            "x-dead-letter-routing-key": dead,
            **safe_dead_lettering,
        },
    )
    for key in routing_keys:
        await queue.bind(exchange, routing_key=key)
    for delay in sorted(set(retry_delays_ms)):
        # One queue per delay: quorum queues expire messages only at the head, so a single
        # queue with per-message TTLs would hold short delays behind long ones.
        await channel.declare_queue(
            retry_queue_name(service, delay),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": delay,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": main,
                **safe_dead_lettering,
            },
        )
    # Declared last, after the bindings: its existence tells a relay that this service's queue
    # receives every routing key (see Publisher's ``await_consumer_queues``). Nothing
    # dead-letters before the consumer runs, so the dead queue can come last.
    dead_queue = await channel.declare_queue(
        dead, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_queue.bind(dlx, routing_key=dead)
    return queue


def _message_from_envelope(envelope: EventEnvelope) -> aio_pika.Message:
    headers: dict[str, Any] = {}
    if envelope.correlation_id is not None:
        headers[CORRELATION_HEADER] = envelope.correlation_id
    return aio_pika.Message(
        envelope.to_json_bytes(),
        message_id=envelope.id,
        correlation_id=envelope.correlation_id,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        type=envelope.type,
        app_id=envelope.producer,
        timestamp=envelope.occurred_at,
        headers=headers,
    )


class Publisher:
    """Publishes envelopes persistent, mandatory and confirmed to ``murmur.events``.

    Connects lazily (so it can be created while RabbitMQ is down) and reconnects through
    aio-pika's robust connection. A publish that cannot be confirmed raises ConnectionError
    (a dependency-down error); one no queue is bound for raises :class:`UnroutableError`.

    ``await_consumer_queues`` (outbox relays): a mandatory publish is only returned when *no*
    queue is bound, so an event consumed by several services and published while one of them
    has not declared its queue yet (a fresh deployment) would reach the others and be lost for
    that one. With the flag, an event is published only once the topology of every service
    that consumes its type (:func:`common.events.consumers_of`) is complete, else it raises
    :class:`UnroutableError` and the relay keeps it and retries. Queues are durable, so a
    service seen complete is not checked again by this process.
    """

    def __init__(
        self,
        amqp_url: str,
        *,
        producer: str,
        publish_timeout: float = 10.0,
        reconnect_interval: float = 2.0,
        await_consumer_queues: bool = False,
    ) -> None:
        self._url = amqp_url
        self._await_consumers = await_consumer_queues
        self._ready_services: set[str] = set()
        self._reconnect_interval = reconnect_interval
        self.producer = producer
        self._timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        async with self._lock:
            if self._exchange is not None:
                return
            connection = await aio_pika.connect_robust(
                self._url, timeout=self._timeout, reconnect_interval=self._reconnect_interval
            )
            try:
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                self._exchange = await channel.declare_exchange(
                    EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
                )
            except BaseException:
                await connection.close()
                raise
            self._connection = connection

    async def close(self) -> None:
        async with self._lock:
            connection, self._connection, self._exchange = self._connection, None, None
            if connection is not None:
                await connection.close()

    @property
    def connection(self) -> AbstractRobustConnection | None:
        return self._connection

    async def _missing_consumers(self, event_type: str) -> list[str]:
        """Consumers of ``event_type`` whose topology is not complete yet (no dead queue,
        which :func:`declare_topology` declares after the bindings)."""
        assert self._connection is not None
        missing: list[str] = []
        for service in consumers_of(event_type):
            if service in self._ready_services:
                continue
            # A passive declare of a missing queue closes its channel: one channel per check.
            channel = await self._connection.channel()
            try:
                await channel.declare_queue(dead_queue_name(service), passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                missing.append(service)
                continue
            finally:
                if not channel.is_closed:
                    await channel.close()
            self._ready_services.add(service)
        return missing

    async def publish(self, envelope: EventEnvelope) -> None:
        if self._exchange is None:
            await self.connect()
        assert self._exchange is not None
        message = _message_from_envelope(envelope)
        try:
            # The outer timeout also bounds waiting for a reconnecting robust channel.
            async with asyncio.timeout(self._timeout):
                if self._await_consumers:
                    missing = await self._missing_consumers(envelope.type)
                    if missing:
                        raise UnroutableError(
                            f"event {envelope.type} {envelope.id} waits for the queues of"
                            f" {', '.join(missing)}"
                        )
                await self._exchange.publish(
                    message, routing_key=envelope.type, mandatory=True, timeout=self._timeout
                )
        except TimeoutError as exc:
            raise ConnectionError(f"AMQP publish of {envelope.type} timed out") from exc
        except aiormq.exceptions.PublishError as exc:
            raise UnroutableError(
                f"event {envelope.type} {envelope.id} is unroutable (no queue bound)"
            ) from exc
        except (aiormq.exceptions.ChannelInvalidStateError, aiormq.exceptions.AMQPError) as exc:
            # Includes a broker nack: the message may or may not be stored; the caller retries.
            raise ConnectionError(
                f"AMQP publish of {envelope.type} not confirmed: {exc!r}"
            ) from exc


@dataclass(slots=True)
class _Deferral:
    aggregate_id: str | None
    attempts: int
    due: float


class RoutingBackoff:
    """Relay-side memory of events the broker returned although a service consumes their type.

    Such an event was published before its consumer declared its queue (first start, a new
    service): it is kept and retried with growing delay. Meanwhile a relay leaves the event,
    and the later events of its aggregate, out of its batches; other aggregates flow on.
    State is per relay process: after a restart an event just starts over at ``initial_s``.
    """

    def __init__(
        self,
        *,
        initial_s: float = 1.0,
        max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._initial = initial_s
        self._max = max_s
        self._clock = clock
        self._events: dict[str, _Deferral] = {}

    def defer(self, event_id: str, aggregate_id: str | None) -> float:
        """Record one more unroutable attempt; returns the delay before the next one."""
        previous = self._events.get(event_id)
        attempts = 1 if previous is None else previous.attempts + 1
        delay = min(self._initial * 2.0 ** min(attempts - 1, 30), self._max)
        self._events[event_id] = _Deferral(aggregate_id, attempts, self._clock() + delay)
        return delay

    def attempts(self, event_id: str) -> int:
        entry = self._events.get(event_id)
        return 0 if entry is None else entry.attempts

    def clear(self, event_id: str) -> None:
        """The event was published (or dropped): forget it."""
        self._events.pop(event_id, None)

    def waiting(self) -> tuple[list[str], list[str]]:
        """Event ids and aggregates to leave out of the next batch (their delay is running)."""
        now = self._clock()
        # An entry due long ago was published or deleted by another relay meanwhile.
        stale = [i for i, d in self._events.items() if d.due < now - 4 * self._max]
        for event_id in stale:
            del self._events[event_id]
        ids: list[str] = []
        aggregates: set[str] = set()
        for event_id, entry in self._events.items():
            if entry.due > now:
                ids.append(event_id)
                if entry.aggregate_id is not None:
                    aggregates.add(entry.aggregate_id)
        return ids, sorted(aggregates)

    def retrying(self) -> set[str]:
        """Aggregates with a deferred event (due or not): only that event goes first."""
        return {d.aggregate_id for d in self._events.values() if d.aggregate_id is not None}

    def next_due_in(self) -> float | None:
        """Seconds until the next deferred event comes due; None when none is still waiting
        (those already due are retried by the next pass anyway)."""
        now = self._clock()
        upcoming = [d.due - now for d in self._events.values() if d.due > now]
        return min(upcoming) if upcoming else None


def has_consumers(event_type: str) -> bool:
    """Whether an unroutable publish of ``event_type`` means "queue not declared yet"."""
    return bool(consumers_of(event_type))


Handler = Callable[[EventEnvelope], Awaitable[None]]


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

    ``handlers`` maps event types (routing keys) to coroutines. A handler that returns has
    handled the message (ack). :class:`TransientError` and dependency-down errors
    (:func:`is_transient`) are retried with growing delay until ``delivery_limit`` attempts;
    anything else is dead-lettered at once with the error in the ``x-murmur-error`` header.
    """

    def __init__(
        self,
        amqp_url: str,
        *,
        service: str,
        handlers: Mapping[str, Handler],
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
        self._handlers = dict(handlers)
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
        """Connect, declare the topology for ``handlers.keys()`` and start consuming."""
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
                sorted(self._handlers),
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
        self._log.info("consumer_started", queue=queue.name, types=sorted(self._handlers))
        unlisted = sorted(t for t in self._handlers if self.service not in consumers_of(t))
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
        try:
            envelope = EventEnvelope.from_json_bytes(message.body)
            handler = self._handlers.get(envelope.type)
            if handler is None or envelope.type not in EVENT_TYPES:
                raise EventDecodeError(f"no handler for event type {envelope.type!r}")
            parse_payload(envelope)  # reject bad data before a handler half-applies it
        except EventDecodeError as exc:
            await self._dead_letter(message, exc)
            return

        # Each delivery runs in its own task (own context copy), so this binding cannot leak
        # into another message's logs.
        bind_correlation_id(envelope.correlation_id or envelope.id)
        with structlog.contextvars.bound_contextvars(
            event_id=envelope.id, event_type=envelope.type
        ):
            try:
                await handler(envelope)
            except Exception as exc:
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


async def claim_once(redis: Redis | RedisCluster, key: str, ttl_s: int) -> bool:
    """Claim ``key`` for ``ttl_s`` seconds (SET NX EX); False when someone already claimed it.

    For effects outside any transaction (sending an email): claim first, and
    :func:`release_claim` when the effect failed so a retry can perform it.
    """
    return bool(await redis.set(key, "1", nx=True, ex=ttl_s))


async def release_claim(redis: Redis | RedisCluster, key: str) -> None:
    await redis.delete(key)
