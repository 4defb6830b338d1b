"""The confirming publisher: events to ``murmur.events``, persistent, mandatory and confirmed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from common.events import EventEnvelope, consumers_of
from common.messaging.topology import EXCHANGE, dead_queue_name

__all__ = ["CORRELATION_HEADER", "Publisher", "UnroutableError"]

CORRELATION_HEADER: Final = "x-correlation-id"


class UnroutableError(Exception):
    """The broker returned a mandatory publish: no queue is bound for its routing key."""


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

    :meth:`add_reconnect_listener`: a caller that backs off after failed publishes (the
    relay) is told when the robust connection is back with its channel restored, so that it
    retries then rather than at the end of a back-off built up during the outage.
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
        self._reconnect_listeners: list[Callable[[], None]] = []

    def add_reconnect_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` each time the connection is back after a loss."""
        self._reconnect_listeners.append(listener)

    @property
    def reconnect_interval(self) -> float:
        return self._reconnect_interval

    def _on_reconnect(self, _connection: object) -> None:
        # aio-pika calls this after it restored the channels (and the exchange) on the new
        # connection, so a publish started now goes out.
        for listener in self._reconnect_listeners:
            listener()

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
            connection.reconnect_callbacks.add(self._on_reconnect)
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
