"""Messaging against a real RabbitMQ 3.10 (one fresh vhost per test)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import aio_pika
import asyncpg
import httpx
import neo4j.exceptions
import pytest
import redis.asyncio as redis
import redis.exceptions as redis_exceptions
import sqlalchemy as sa
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from common.db import create_engine, session_factory
from common.events import (
    EventDecodeError,
    EventEnvelope,
    EventPayload,
    PostCreated,
    PostLiked,
    UserDeleted,
    make_envelope,
)
from common.failures import PermanentError, TransientError, is_transient
from common.logging import correlation_id
from common.messaging.consumer import ERROR_HEADER, Consumer
from common.messaging.handlers import EventHandler, EventHandlers
from common.messaging.publisher import Publisher, UnroutableError
from common.messaging.topology import DLX, EXCHANGE, dead_queue_name, declare_topology, queue_name
from common.outbox import mark_processed, processed_events_table, purge_processed
from common.time import utcnow
from tests.support.failures import TRANSIENT_DEPENDENCY_ERRORS
from tests.support.polling import eventually, until

DEADLINE_S = 30.0

P = TypeVar("P", bound=EventPayload)


async def drain(
    connection: AbstractRobustConnection, queue: str, expected: int, timeout: float = DEADLINE_S
) -> list[AbstractIncomingMessage]:
    """Take (and ack) messages from ``queue`` until ``expected`` arrived; then check no more."""
    channel = await connection.channel()
    q = await channel.get_queue(queue, ensure=False)
    got: list[AbstractIncomingMessage] = []

    async def have_all() -> bool:
        while (message := await q.get(no_ack=True, fail=False)) is not None:
            got.append(message)
        return len(got) >= expected

    await eventually(have_all, timeout=timeout)
    await asyncio.sleep(0.2)  # anything extra (a duplicate) has had time to arrive
    while (extra := await q.get(no_ack=True, fail=False)) is not None:
        got.append(extra)
    await channel.close()
    return got


def vhost_path(amqp_url: str) -> str:
    """The vhost of an AMQP URL, quoted for the management API's paths."""
    return quote(URL(amqp_url).path.removeprefix("/") or "/", safe="")


def handling(event_class: type[P], handler: EventHandler[P]) -> EventHandlers:
    handlers = EventHandlers()
    handlers.on(event_class)(handler)
    return handlers


def post_created(content: str, post_id: str = "p1") -> PostCreated:
    return PostCreated(post_id=post_id, author_id="u1", content=content, created_at=utcnow())


@pytest.fixture
async def vhost_url(make_vhost: Callable[[str], Awaitable[str]]) -> str:
    return await make_vhost("messaging")


@pytest.fixture
async def amqp(vhost_url: str) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(vhost_url)
    yield connection
    await connection.close()


@pytest.fixture
async def publisher(vhost_url: str) -> AsyncIterator[Publisher]:
    pub = Publisher(vhost_url, producer="test")
    await pub.connect()
    yield pub
    await pub.close()


@pytest.fixture
async def consumers() -> AsyncIterator[list[Consumer]]:
    started: list[Consumer] = []
    yield started
    for consumer in started:
        await consumer.stop()


async def test_published_event_reaches_its_bound_queue(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    channel = await amqp.channel()
    await declare_topology(channel, "svc", ["post.created"])
    envelope = make_envelope(post_created("hello"), producer="post", correlation_id="corr-7")

    await publisher.publish(envelope)

    [message] = await drain(amqp, queue_name("svc"), 1)
    assert EventEnvelope.from_json_bytes(message.body) == envelope
    assert message.message_id == envelope.id
    assert message.routing_key == "post.created"
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.correlation_id == "corr-7"
    assert message.headers["x-correlation-id"] == "corr-7"


async def test_topology_is_quorum_with_explicit_limits_and_dead_lettering(
    amqp: AbstractRobustConnection, rabbitmq: Any, vhost_url: str
) -> None:
    channel = await amqp.channel()
    await declare_topology(channel, "svc", ["user.deleted"], delivery_limit=7)
    vhost = vhost_path(vhost_url)
    async with httpx.AsyncClient(base_url=rabbitmq.management_url, auth=("guest", "guest")) as http:
        main = (await http.get(f"/api/queues/{vhost}/svc.events")).json()
        dead = (await http.get(f"/api/queues/{vhost}/svc.events.dead")).json()
        retry = (await http.get(f"/api/queues/{vhost}/svc.events.retry.5000")).json()
        exchange = (await http.get(f"/api/exchanges/{vhost}/{EXCHANGE}")).json()
    assert exchange["type"] == "topic" and exchange["durable"]
    assert main["durable"] and main["arguments"]["x-queue-type"] == "quorum"
    assert main["arguments"]["x-delivery-limit"] == 7
    assert main["arguments"]["x-dead-letter-exchange"] == DLX
    assert main["arguments"]["x-dead-letter-routing-key"] == "svc.events.dead"
    assert dead["durable"] and dead["arguments"]["x-queue-type"] == "quorum"
    assert retry["arguments"]["x-message-ttl"] == 5000
    assert retry["arguments"]["x-dead-letter-routing-key"] == "svc.events"


async def test_unroutable_publish_raises(publisher: Publisher) -> None:
    # Nothing is bound for this type in the fresh vhost.
    envelope = make_envelope(UserDeleted(user_id="u1"), producer="auth")
    with pytest.raises(UnroutableError):
        await publisher.publish(envelope)


async def test_poison_messages_are_dead_lettered_with_the_error_while_others_flow(
    vhost_url: str,
    amqp: AbstractRobustConnection,
    publisher: Publisher,
    consumers: list[Consumer],
) -> None:
    calls: list[str] = []
    handled: list[str] = []

    async def handle(event: PostCreated, _envelope: EventEnvelope) -> None:
        content = event.content
        calls.append(content)
        if content == "permanent":
            raise PermanentError("cannot apply this one")
        if content == "bug":
            raise KeyError("handler bug")
        handled.append(content)

    consumer = Consumer(
        vhost_url, service="svc", handlers=handling(PostCreated, handle), prefetch=4
    )
    await consumer.start()
    consumers.append(consumer)

    await publisher.publish(make_envelope(post_created("permanent"), producer="post"))
    await publisher.publish(make_envelope(post_created("bug"), producer="post"))
    raw = await amqp.channel()
    exchange = await raw.get_exchange(EXCHANGE)
    await exchange.publish(aio_pika.Message(b"{not json"), routing_key="post.created")
    invalid = make_envelope(post_created("x"), producer="post").model_copy(
        update={"data": {"post_id": "p1"}}
    )
    await exchange.publish(aio_pika.Message(invalid.to_json_bytes()), routing_key="post.created")
    for i in range(5):
        await publisher.publish(make_envelope(post_created(f"ok-{i}"), producer="post"))

    await until(lambda: len(handled) == 5)
    assert handled == [f"ok-{i}" for i in range(5)]

    dead = await drain(amqp, dead_queue_name("svc"), 4)
    errors = sorted(str(m.headers[ERROR_HEADER]) for m in dead)
    assert len(errors) == 4
    assert errors[0].startswith("EventDecodeError: invalid event envelope")
    assert errors[1].startswith("EventDecodeError: invalid post.created data")
    assert errors[2] == "KeyError: 'handler bug'"
    assert errors[3] == "PermanentError: cannot apply this one"
    # Dead-lettered at once: neither failing message was retried.
    assert calls.count("permanent") == 1 and calls.count("bug") == 1
    assert all(m.headers["x-murmur-consumer"] == "svc" for m in dead)


async def test_transient_errors_are_retried_with_growing_delay_then_succeed(
    vhost_url: str,
    amqp: AbstractRobustConnection,
    publisher: Publisher,
    consumers: list[Consumer],
) -> None:
    attempts: list[float] = []
    failures: list[Exception] = [TransientError("busy"), ConnectionError("redis down")]

    async def handle(_event: PostLiked, _envelope: EventEnvelope) -> None:
        attempts.append(time.monotonic())
        if failures:
            raise failures.pop(0)

    consumer = Consumer(
        vhost_url,
        service="svc",
        handlers=handling(PostLiked, handle),
        retry_delays_ms=(300, 900),
    )
    await consumer.start()
    consumers.append(consumer)

    await publisher.publish(
        make_envelope(PostLiked(post_id="p", post_author_id="a", user_id="u"), producer="post")
    )

    await until(lambda: len(attempts) == 3)
    first_delay, second_delay = attempts[1] - attempts[0], attempts[2] - attempts[1]
    assert first_delay >= 0.25
    assert second_delay >= 0.85
    await asyncio.sleep(0.5)
    assert len(attempts) == 3  # succeeded on the third attempt, nothing more
    assert await drain(amqp, dead_queue_name("svc"), 0) == []


async def test_each_dependency_error_is_retried_not_dead_lettered(
    vhost_url: str,
    amqp: AbstractRobustConnection,
    publisher: Publisher,
    consumers: list[Consumer],
) -> None:
    # Each message fails once with one of the errors, then succeeds on its retry.
    failures = {name: make for name, make in TRANSIENT_DEPENDENCY_ERRORS}
    calls: dict[str, int] = {}

    async def handle(event: PostCreated, _envelope: EventEnvelope) -> None:
        calls[event.content] = calls.get(event.content, 0) + 1
        make = failures.pop(event.content, None)
        if make is not None:
            raise make()

    consumer = Consumer(
        vhost_url,
        service="svc",
        handlers=handling(PostCreated, handle),
        delivery_limit=3,
        retry_delays_ms=(100,),
    )
    await consumer.start()
    consumers.append(consumer)
    for name, _make in TRANSIENT_DEPENDENCY_ERRORS:
        await publisher.publish(make_envelope(post_created(name), producer="post"))

    await until(lambda: sum(calls.values()) == 2 * len(TRANSIENT_DEPENDENCY_ERRORS))
    assert calls == {name: 2 for name, _make in TRANSIENT_DEPENDENCY_ERRORS}
    assert await drain(amqp, dead_queue_name("svc"), 0) == []


async def test_transient_failures_past_the_delivery_limit_are_dead_lettered(
    vhost_url: str,
    amqp: AbstractRobustConnection,
    publisher: Publisher,
    consumers: list[Consumer],
) -> None:
    calls: dict[str, int] = {}

    async def handle(event: PostCreated, _envelope: EventEnvelope) -> None:
        calls[event.content] = calls.get(event.content, 0) + 1
        if event.content == "stuck":
            raise TransientError("still down")

    consumer = Consumer(
        vhost_url,
        service="svc",
        handlers=handling(PostCreated, handle),
        delivery_limit=3,
        retry_delays_ms=(100,),
    )
    await consumer.start()
    consumers.append(consumer)

    await publisher.publish(make_envelope(post_created("stuck"), producer="post"))
    await publisher.publish(make_envelope(post_created("fine"), producer="post"))

    [dead] = await drain(amqp, dead_queue_name("svc"), 1)
    assert calls == {"stuck": 3, "fine": 1}
    assert dead.headers[ERROR_HEADER] == "delivery limit 3 reached: TransientError: still down"


async def test_broker_delivery_limit_dead_letters_a_message_that_keeps_crashing_consumers(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    # A consumer process that dies on a message (never acks) must not loop forever.
    channel = await amqp.channel()
    queue = await declare_topology(channel, "svc", ["post.created"], delivery_limit=2)
    await publisher.publish(make_envelope(post_created("crash"), producer="post"))

    async def deliveries_rejected() -> bool:
        message = await queue.get(fail=False)
        if message is not None:
            await message.nack(requeue=True)
        return message is None and await queue.get(fail=False) is None

    await eventually(deliveries_rejected)
    [dead] = await drain(amqp, dead_queue_name("svc"), 1)
    deaths: Any = dead.headers["x-death"]
    assert deaths[0]["reason"] == "delivery_limit"


@pytest.fixture
async def engine(make_database: Callable[[str], Awaitable[str]]) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(await make_database("messaging"))
    metadata = sa.MetaData()
    processed_events_table(metadata)
    sa.Table("effects", metadata, sa.Column("event_id", sa.Text, nullable=False))
    async with eng.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield eng
    await eng.dispose()


async def kill_connections(rabbitmq: Any, vhost_url: str, name_contains: str = "") -> int:
    """Close the vhost's client connections from the broker side, as a network cut would."""
    vhost = vhost_path(vhost_url)
    async with httpx.AsyncClient(base_url=rabbitmq.management_url, auth=("guest", "guest")) as http:
        names: list[str] = []

        async def listed() -> bool:
            response = await http.get(f"/api/vhosts/{vhost}/connections")
            names[:] = [
                c["name"]
                for c in response.json()
                if name_contains in (c.get("user_provided_name") or "")
            ]
            return bool(names)

        await eventually(listed)
        for name in names:
            await http.delete(f"/api/connections/{name}")
    return len(names)


async def test_consumer_killed_before_ack_gets_the_message_again_and_applies_it_once(
    vhost_url: str,
    rabbitmq: Any,
    amqp: AbstractRobustConnection,
    engine: AsyncEngine,
    consumers: list[Consumer],
) -> None:
    sessions = session_factory(engine)
    deliveries: list[str] = []
    applied_once = asyncio.Event()
    release = asyncio.Event()

    async def handle(_event: UserDeleted, envelope: EventEnvelope) -> None:
        deliveries.append(envelope.id)
        async with sessions.begin() as session:
            if await mark_processed(session, envelope.id, "svc"):
                await session.execute(
                    sa.text("INSERT INTO effects VALUES (:id)"), {"id": envelope.id}
                )
        if len(deliveries) == 1:
            # The effect is committed; the consumer dies before it can ack.
            applied_once.set()
            await release.wait()

    consumer = Consumer(
        str(URL(vhost_url).update_query(name="victim")),
        service="svc",
        handlers=handling(UserDeleted, handle),
    )
    await consumer.start()
    consumers.append(consumer)
    # A publisher on its own connection, so killing the consumer's leaves it alone.
    publisher = Publisher(vhost_url, producer="auth")
    envelope = make_envelope(UserDeleted(user_id="u9"), producer="auth")
    await publisher.publish(envelope)
    await publisher.close()

    await asyncio.wait_for(applied_once.wait(), DEADLINE_S)
    assert await kill_connections(rabbitmq, vhost_url, "victim") == 1
    release.set()

    # The robust connection comes back and the broker redelivers the unacked message.
    await until(lambda: len(deliveries) >= 2)
    assert set(deliveries) == {envelope.id}
    async with engine.connect() as conn:
        effects = (await conn.execute(sa.text("SELECT event_id FROM effects"))).scalars().all()
    assert effects == [envelope.id]

    # Acked the second time: nothing left in the queue once the consumer is gone.
    await consumer.stop()
    consumers.remove(consumer)
    assert await drain(amqp, queue_name("svc"), 0) == []


async def test_mark_processed_is_true_once_per_consumer(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        assert await mark_processed(session, "e1", "feed") is True
        assert await mark_processed(session, "e1", "feed") is False
        assert await mark_processed(session, "e1", "email") is True
    async with sessions.begin() as session:
        assert await mark_processed(session, "e1", "feed") is False
    # Rolled back with the effect: the event counts as not processed.
    async with sessions() as session:
        assert await mark_processed(session, "e2", "feed") is True
        await session.rollback()
    async with sessions.begin() as session:
        assert await mark_processed(session, "e2", "feed") is True

    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE processed_events SET processed_at = now() - interval '8 days'"
                " WHERE event_id = 'e1'"
            )
        )
    assert await purge_processed(engine) == 2
    async with sessions.begin() as session:
        assert await mark_processed(session, "e2", "feed") is False


async def test_run_forever_binds_the_correlation_id_while_handling_and_stops_on_cancel(
    vhost_url: str, publisher: Publisher
) -> None:
    seen: list[tuple[str | None, Any, Any]] = []

    async def handle(_event: UserDeleted, _envelope: EventEnvelope) -> None:
        bound = structlog.contextvars.get_contextvars()
        seen.append((correlation_id.get(), bound.get("correlation_id"), bound.get("event_id")))

    consumer = Consumer(vhost_url, service="svc", handlers=handling(UserDeleted, handle))
    task = asyncio.create_task(consumer.run_forever())
    try:
        await until(lambda: consumer.running)
        first = make_envelope(UserDeleted(user_id="u1"), producer="auth", correlation_id="req-1")
        second = make_envelope(UserDeleted(user_id="u2"), producer="auth", correlation_id="req-2")
        await publisher.publish(first)
        await publisher.publish(second)
        await until(lambda: len(seen) == 2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sorted(seen) == [("req-1", "req-1", first.id), ("req-2", "req-2", second.id)]
    assert consumer.connection is None and not consumer.running


def _raised(make: Callable[[], BaseException]) -> BaseException:
    try:
        raise make()
    except BaseException as exc:
        return exc


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


def _in_handler_of(first: BaseException, second: BaseException) -> BaseException:
    try:
        try:
            raise first
        except BaseException:
            raise second  # noqa: B904 - the implicit context is what is being tested
    except BaseException as exc:
        return exc


def _http_status(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://post/internal")
    return httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(status, request=request)
    )


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (TransientError("later"), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (redis.ConnectionError("down"), True),
        (_chained(sa.exc.OperationalError("SELECT 1", {}, Exception()), OSError()), True),
        (_chained(RuntimeError("wrapped"), ConnectionResetError()), True),
        (
            _chained(
                sa.exc.InternalError("INSERT INTO authors", {}, Exception()),
                asyncpg.InternalClientError("cannot switch to state 11"),
            ),
            True,
        ),
        (neo4j.exceptions.SessionExpired("gone"), True),
        (redis_exceptions.TryAgainError("resharding"), True),
        *((make(), True) for _name, make in TRANSIENT_DEPENDENCY_ERRORS),
        (asyncpg.SerializationError("could not serialize access"), True),
        (asyncpg.DeadlockDetectedError("deadlock detected"), True),
        (_http_status(429), True),
        (_chained(sa.exc.InternalError("SELECT 1", {}, Exception()), ValueError()), False),
        (_http_status(503), True),
        (_http_status(404), False),
        (PermanentError("never"), False),
        (_chained(PermanentError("bad data"), ConnectionError()), False),
        (_in_handler_of(ConnectionError(), ValueError("bug")), False),
        (KeyError("bug"), False),
    ],
)
def test_is_transient_classifies_dependency_failures(exc: BaseException, transient: bool) -> None:
    assert is_transient(_raised(lambda: exc)) is transient


async def test_a_handler_gets_the_event_parsed_and_may_serve_two_types() -> None:
    handlers = EventHandlers()
    seen: list[tuple[str, str]] = []

    @handlers.on(PostCreated, PostLiked)
    async def handle(event: PostCreated | PostLiked, envelope: EventEnvelope) -> None:
        seen.append((type(event).__name__, envelope.id))

    created = make_envelope(post_created("hi"), producer="post")
    liked = make_envelope(PostLiked(post_id="p", post_author_id="a", user_id="u"), producer="post")
    await handlers.handle(created)
    await handlers.handle(liked)
    assert seen == [("PostCreated", created.id), ("PostLiked", liked.id)]
    assert handlers.event_types == ["post.created", "post.liked"]
    with pytest.raises(EventDecodeError, match="no handler"):
        await handlers.handle(make_envelope(UserDeleted(user_id="u"), producer="auth"))
    with pytest.raises(EventDecodeError, match=r"invalid post\.created data"):
        await handlers.handle(created.model_copy(update={"data": {"post_id": "p"}}))


def test_handlers_are_registered_once_per_known_event_model() -> None:
    class Unknown(EventPayload):
        event_type: ClassVar[str] = "post.created"

    handlers = EventHandlers()

    async def handle(_event: EventPayload, _envelope: EventEnvelope) -> None:
        return None

    handlers.on(PostCreated)(handle)
    with pytest.raises(ValueError, match="already has a handler"):
        handlers.on(PostCreated)(handle)
    with pytest.raises(ValueError, match="not an event model"):
        handlers.on(Unknown)(handle)
