"""Transactional outbox and relay against real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from fastapi import FastAPI, HTTPException
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from common.db import SessionDep, create_engine, session_factory
from common.events import (
    EventEnvelope,
    EventPayload,
    PostUpdated,
    UserDeleted,
    UserEmailVerified,
    UserPasswordResetRequested,
    UserUpdated,
    UserVerificationRequested,
    consumers_of,
)
from common.messaging.consumer import Consumer
from common.messaging.handlers import EventHandlers
from common.messaging.publisher import Publisher
from common.messaging.topology import declare_topology, queue_name
from common.outbox import (
    NOTIFY_CHANNEL,
    OutboxRelay,
    emit,
    outbox_table,
    processed_events_table,
)
from common.time import utcnow
from tests.support.polling import eventually, until
from tests.support.sealing import sealed

DEADLINE_S = 60.0


async def call(fn: Callable[[], Any]) -> None:
    """Run a fixture handle's start/stop whether it is sync (off the loop) or async."""
    if inspect.iscoroutinefunction(fn):
        await fn()
    else:
        await asyncio.to_thread(fn)


class Database:
    def __init__(self, url: str, engine: AsyncEngine) -> None:
        self.url = url
        self.engine = engine
        self.sessions: async_sessionmaker[Any] = session_factory(engine)
        metadata = sa.MetaData()
        self.outbox = outbox_table(metadata)

    async def pending(self) -> int:
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                sa.select(sa.func.count()).where(self.outbox.c.published_at.is_(None))
            )
        return int(count or 0)

    async def add_updates(self, n: int, *, aggregates: int = 1, start: int = 0) -> list[str]:
        """n events, one transaction each, round-robin over ``aggregates`` posts."""
        ids = []
        for i in range(start, start + n):
            async with self.sessions.begin() as session:
                envelope = await emit(
                    session,
                    PostUpdated(
                        post_id=f"p{i % aggregates}",
                        author_id="u1",
                        content=str(i),
                        edited_at=utcnow(),
                    ),
                    producer="post",
                )
            ids.append(envelope.id)
        return ids


@pytest.fixture
async def db(make_database: Callable[[str], Awaitable[str]]) -> AsyncIterator[Database]:
    url = await make_database("outbox")
    engine = create_engine(url)
    metadata = sa.MetaData()
    outbox_table(metadata)
    processed_events_table(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield Database(url, engine)
    await engine.dispose()


@pytest.fixture
async def vhost_url(make_vhost: Callable[[str], Awaitable[str]]) -> str:
    return await make_vhost("outbox")


@pytest.fixture
async def amqp(vhost_url: str) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(vhost_url)
    channel = await connection.channel()
    await declare_topology(channel, "sink", ["post.updated", "user.deleted"])
    await channel.close()
    yield connection
    await connection.close()


async def collect(
    connection: AbstractRobustConnection, expected: int, timeout: float = DEADLINE_S
) -> list[AbstractIncomingMessage]:
    """Everything in the sink queue once ``expected`` messages arrived (extras included)."""
    channel = await connection.channel()
    queue = await channel.get_queue(queue_name("sink"), ensure=False)
    got: list[AbstractIncomingMessage] = []

    async def have_all() -> bool:
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            got.append(message)
        return len(got) >= expected

    await eventually(have_all, timeout=timeout)
    await asyncio.sleep(0.5)  # give a duplicate the chance to show up
    while (extra := await queue.get(no_ack=True, fail=False)) is not None:
        got.append(extra)
    await channel.close()
    return got


def make_relay(db: Database, url: str, **kw: Any) -> tuple[OutboxRelay, Publisher]:
    publisher = Publisher(url, producer="post", publish_timeout=3.0)
    relay = OutboxRelay(
        db.engine,
        publisher,
        dsn=db.url,
        poll_interval=kw.pop("poll_interval", 0.5),
        max_backoff=1.0,
        **kw,
    )
    return relay, publisher


async def test_emit_is_part_of_the_callers_transaction_and_notifies_on_commit(
    db: Database,
) -> None:
    listener = await asyncpg.connect(db.url.replace("postgresql+asyncpg", "postgresql"))
    notified = asyncio.Event()
    await listener.add_listener(NOTIFY_CHANNEL, lambda *_: notified.set())
    try:
        async with db.sessions() as session:
            await emit(session, UserDeleted(user_id="u1"), producer="auth")
            await session.rollback()
        await asyncio.sleep(0.2)
        assert not notified.is_set()
        assert await db.pending() == 0

        async with db.sessions.begin() as session:
            envelope = await emit(
                session, UserDeleted(user_id="u2"), producer="auth", correlation_id="c-1"
            )
            await asyncio.sleep(0.2)
            assert not notified.is_set()  # not before commit
        await asyncio.wait_for(notified.wait(), 5)
    finally:
        await listener.close()

    async with db.engine.connect() as conn:
        row = (await conn.execute(sa.select(db.outbox))).one()
    assert row.id == envelope.id and row.type == "user.deleted" and row.aggregate_id == "u2"
    assert EventEnvelope.model_validate(row.payload) == envelope
    assert row.published_at is None


async def test_relay_publishes_in_order_marks_sent_and_purges_old_rows(
    db: Database, vhost_url: str, amqp: AbstractRobustConnection
) -> None:
    ids = await db.add_updates(25, aggregates=3)
    relay, publisher = make_relay(db, vhost_url, batch_size=10)
    try:
        assert await relay.publish_pending() == 10
        await relay.start()
        messages = await collect(amqp, 25)
        assert [m.message_id for m in messages] == ids
        await eventually(lambda: _is_zero(db.pending()))

        # Published rows older than the retention period are deleted, newer ones kept.
        async with db.engine.begin() as conn:
            await conn.execute(
                sa.update(db.outbox)
                .where(db.outbox.c.id.in_(ids[:5]))
                .values(published_at=sa.func.now() - sa.text("interval '2 days'"))
            )
        assert await relay.purge_published() == 5
        async with db.engine.connect() as conn:
            left = (await conn.execute(sa.select(db.outbox.c.id))).scalars().all()
        assert sorted(left) == sorted(ids[5:])
    finally:
        await relay.stop()
        await publisher.close()


async def _is_zero(value: Awaitable[int]) -> bool:
    return await value == 0


async def test_outbox_keeps_accepting_writes_while_rabbitmq_is_down_then_delivers_each_once(
    db: Database, vhost_url: str, amqp: AbstractRobustConnection, rabbitmq: Any
) -> None:
    received: list[str] = []

    handlers = EventHandlers()

    @handlers.on(PostUpdated)
    async def handle(_event: PostUpdated, envelope: EventEnvelope) -> None:
        received.append(envelope.id)

    # Both ends live through the restart: the relay's publisher and a consumer reconnect.
    consumer = Consumer(vhost_url, service="sink", handlers=handlers)
    await consumer.start()
    relay, publisher = make_relay(db, vhost_url)
    await relay.start()
    try:
        before = await db.add_updates(3)
        await until(lambda: len(received) == 3)

        await call(rabbitmq.stop)
        try:
            during = await db.add_updates(20, aggregates=4, start=3)
            await asyncio.sleep(1.5)  # the relay tries and fails meanwhile
            assert await db.pending() == 20
        finally:
            await call(rabbitmq.start)

        await until(lambda: len(received) >= 23)
        await asyncio.sleep(1.0)  # a duplicate would arrive meanwhile
        assert received == before + during  # each exactly once, in order
        await eventually(lambda: _is_zero(db.pending()))
    finally:
        await relay.stop()
        await publisher.close()
        await consumer.stop()


async def test_two_relays_do_not_double_publish_and_keep_per_aggregate_order(
    db: Database, vhost_url: str, amqp: AbstractRobustConnection
) -> None:
    ids = await db.add_updates(300, aggregates=7)
    relays = [make_relay(db, vhost_url, batch_size=10, poll_interval=0.05) for _ in range(2)]
    await asyncio.gather(*(relay.start() for relay, _ in relays))
    try:
        messages = await collect(amqp, len(ids))
    finally:
        for relay, publisher in relays:
            await relay.stop()
            await publisher.close()

    assert sorted(str(m.message_id) for m in messages) == sorted(ids)  # none twice, none lost
    by_post: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        data = EventEnvelope.from_json_bytes(message.body).data
        by_post[data["post_id"]].append(int(data["content"]))
    for contents in by_post.values():
        assert contents == sorted(contents)
    apps = {m.app_id for m in messages}
    assert apps == {"post"}


async def test_session_dep_commits_the_event_with_the_response_and_rolls_back_on_error(
    db: Database,
) -> None:
    app = FastAPI()
    app.state.sessionmaker = db.sessions

    @app.post("/users/{user_id}/delete", status_code=201)
    async def delete_user(user_id: str, session: SessionDep) -> dict[str, str]:
        envelope = await emit(session, UserDeleted(user_id=user_id), producer="auth")
        if user_id == "refused":
            raise HTTPException(status_code=409, detail="no")
        return {"event_id": envelope.id}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ok = await client.post("/users/u1/delete")
        assert ok.status_code == 201
        async with db.engine.connect() as conn:
            ids = (await conn.execute(sa.select(db.outbox.c.id))).scalars().all()
        assert ids == [ok.json()["event_id"]]

        refused = await client.post("/users/refused/delete")
        assert refused.status_code == 409
    assert await db.pending() == 1


async def test_relay_is_woken_by_notify_and_its_listen_connection_comes_back(
    db: Database, vhost_url: str, amqp: AbstractRobustConnection
) -> None:
    # Polling every 5 minutes: only a NOTIFY can explain a quick delivery.
    relay, publisher = make_relay(db, vhost_url, poll_interval=300)
    admin = await asyncpg.connect(db.url.replace("postgresql+asyncpg", "postgresql"))
    listen_pids: list[int] = []

    async def listener_changed() -> bool:
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        if pid is not None and pid not in listen_pids:
            listen_pids.append(pid)
            return True
        return False

    await relay.start()
    try:
        await eventually(listener_changed)
        await eventually(lambda: _is_zero(db.pending()))  # the start-up pass is done
        first = await db.add_updates(1)
        assert [m.message_id for m in await collect(amqp, 1, timeout=10)] == first

        # PostgreSQL drops the LISTEN session (restart, failover): the relay listens again.
        await admin.execute("SELECT pg_terminate_backend($1)", listen_pids[0])
        await eventually(listener_changed)
        await eventually(lambda: _is_zero(db.pending()))
        second = await db.add_updates(1, start=1)
        assert [m.message_id for m in await collect(amqp, 1, timeout=10)] == second
    finally:
        await admin.close()
        await relay.stop()
        await publisher.close()


# --- events published before their consumer's queue exists -----------------------------


async def _published(db: Database, event_id: str) -> bool:
    async with db.engine.connect() as conn:
        published_at = await conn.scalar(
            sa.select(db.outbox.c.published_at).where(db.outbox.c.id == event_id)
        )
    return published_at is not None


async def _add(db: Database, *payloads: EventPayload) -> list[str]:
    ids = []
    for payload in payloads:
        async with db.sessions.begin() as session:
            ids.append((await emit(session, payload, producer="auth")).id)
    return ids


def _verification(user_id: str) -> UserVerificationRequested:
    return UserVerificationRequested(
        user_id=user_id, username=user_id, sealed=sealed(f"{user_id}@example.com", "t-" + user_id)
    )


async def test_event_committed_before_its_consumer_queue_exists_is_delivered_once_it_starts(
    db: Database, vhost_url: str
) -> None:
    assert consumers_of("user.verification_requested") == ("email",)
    assert consumers_of("user.email_verified") == ()
    verification, verified, reset = await _add(
        db,
        _verification("u1"),
        UserEmailVerified(user_id="u2"),  # nobody consumes it: must not wait for anyone
        UserPasswordResetRequested(user_id="u1", username="u1", sealed=sealed("u1@x.io", "r")),
    )
    relay, publisher = make_relay(db, vhost_url, unroutable_backoff=0.2)
    received: list[str] = []

    handlers = EventHandlers()

    @handlers.on(UserVerificationRequested, UserPasswordResetRequested)
    async def handle(
        _event: UserVerificationRequested | UserPasswordResetRequested, envelope: EventEnvelope
    ) -> None:
        received.append(envelope.id)

    consumer = Consumer(vhost_url, service="email", handlers=handlers)
    await relay.start()
    try:
        await eventually(lambda: _published(db, verified))
        await asyncio.sleep(1.0)  # several retries meanwhile
        assert await db.pending() == 2  # kept, not dropped

        await consumer.start()  # email_service starts late and declares its queue
        await until(lambda: len(received) >= 2)
        await eventually(lambda: _is_zero(db.pending()))
        await asyncio.sleep(0.5)  # a duplicate would arrive meanwhile
        assert received == [verification, reset]  # once each, in order
    finally:
        await relay.stop()
        await publisher.close()
        await consumer.stop()


async def test_an_aggregate_waiting_for_its_consumer_blocks_only_itself(
    db: Database, vhost_url: str
) -> None:
    connection = await aio_pika.connect_robust(vhost_url)
    channel = await connection.channel()
    # feed is up, email is not.
    feed = await declare_topology(channel, "feed", ["post.updated", "user.updated"])
    waiting = await _add(db, *(_verification(f"u{i}") for i in range(5)))
    later_of_u0 = await _add(db, UserUpdated(user_id="u0", username="u0", display_name="U0"))
    others = await db.add_updates(6, aggregates=3)
    (unconsumed,) = await _add(db, UserEmailVerified(user_id="u9"))
    # Small batches: the waiting events must not keep the rest out of every batch.
    relay, publisher = make_relay(db, vhost_url, batch_size=2, unroutable_backoff=0.5)
    got: list[str] = []

    async def feed_received(count: int) -> bool:
        while (message := await feed.get(no_ack=True, fail=False)) is not None:
            got.append(str(message.message_id))
        return len(got) >= count

    await relay.start()
    try:
        await eventually(lambda: feed_received(len(others)))
        await eventually(lambda: _published(db, unconsumed))
        await asyncio.sleep(1.0)
        await feed_received(0)
        # user.updated of u0 is routable, but waits behind u0's earlier event.
        assert got == others
        assert await db.pending() == len(waiting) + 1

        await declare_topology(channel, "email", ["user.verification_requested"])
        await eventually(lambda: _is_zero(db.pending()))
        await eventually(lambda: feed_received(len(others) + 1))
        assert got == others + later_of_u0
        email = await channel.get_queue(queue_name("email"), ensure=False)
        delivered = []
        while (message := await email.get(no_ack=True, fail=False)) is not None:
            delivered.append(str(message.message_id))
        assert sorted(delivered) == sorted(waiting)
    finally:
        await relay.stop()
        await publisher.close()
        await connection.close()


async def _listening(relay: OutboxRelay) -> bool:
    return relay.listening


async def _listen_sessions(admin: asyncpg.Connection) -> int:
    count = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
    )
    return int(count)


async def test_stop_returns_at_once_even_right_after_a_wake_up_and_closes_the_listen_session(
    db: Database, vhost_url: str
) -> None:
    # The hang fixed in the Neo4j relay (commit 7499864) on this store: a NOTIFY's wake-up
    # landing with stop() must not keep the relay (or its LISTEN connection) alive.
    admin = await asyncpg.connect(db.url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for _ in range(5):
            relay, publisher = make_relay(db, vhost_url, poll_interval=5.0)
            await relay.start()
            await eventually(functools.partial(_listening, relay))
            await asyncio.sleep(0.05)  # past the start-up pass: sleeping until woken
            async with db.sessions.begin() as session:
                await emit(session, UserDeleted(user_id="u1"), producer="auth")
            relay.wake()
            await asyncio.sleep(0)
            stopping = asyncio.create_task(relay.stop())
            done, _ = await asyncio.wait({stopping}, timeout=5)
            assert stopping in done, "the relay outlived stop()"
            await publisher.close()
            await eventually(lambda: _is_zero(_listen_sessions(admin)), timeout=10)
    finally:
        await admin.close()
