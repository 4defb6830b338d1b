"""The RabbitMQ topology every service shares: exchanges, queue names and their arguments.

RabbitMQ 3.10: every limit is set explicitly, nothing relies on 4.x defaults::

    murmur.events (topic) --type--> <service>.events (quorum, x-delivery-limit, DLX murmur.dlx)
    <service>.events.retry.<ms> (quorum, TTL <ms>) --dead-letter--> <service>.events
    murmur.dlx (direct) --<service>.events.dead--> <service>.events.dead (quorum)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

__all__ = [
    "DEFAULT_RETRY_DELAYS_MS",
    "DLX",
    "EXCHANGE",
    "dead_queue_name",
    "declare_topology",
    "queue_name",
    "retry_queue_name",
]

EXCHANGE: Final = "murmur.events"
DLX: Final = "murmur.dlx"
DEFAULT_RETRY_DELAYS_MS: Final = (1000, 5000, 30000)


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
