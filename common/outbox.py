"""PostgreSQL transactional outbox and processed-event guard.

A state change and its events commit in one transaction (:func:`emit`); the
:class:`OutboxRelay` (the one relay of :mod:`common.relay` on :class:`PostgresOutboxStore`)
later publishes pending rows in ``seq`` order with publisher confirms and marks them sent. The
API therefore keeps working while RabbitMQ is down, and nothing written is lost. A crash
between publish and mark republishes a row: consumers are idempotent (:func:`mark_processed`).

Several relay replicas may run: each pass locks its rows with ``FOR UPDATE SKIP LOCKED``, so a
row is published by one replica in the normal case, and an aggregate whose earlier row is
locked by another replica is left for a later pass, which keeps per-aggregate order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Final

import asyncpg
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from common.events import EventEnvelope, EventPayload, make_envelope
from common.logging import get_logger
from common.messaging.publisher import Publisher
from common.relay import PendingEvent, Relay, wait_for_event

__all__ = [
    "NOTIFY_CHANNEL",
    "OutboxRelay",
    "PostgresOutboxStore",
    "emit",
    "mark_processed",
    "outbox_table",
    "processed_events_table",
    "purge_processed",
]

NOTIFY_CHANNEL: Final = "murmur_outbox"

_log = get_logger("common.outbox")


def outbox_table(metadata: MetaData) -> Table:
    """The ``outbox`` table in ``metadata`` (created there once; later calls return it)."""
    if "outbox" in metadata.tables:
        return metadata.tables["outbox"]
    return Table(
        "outbox",
        metadata,
        Column("id", Text, primary_key=True),  # the event id (UUIDv7), also the AMQP message_id
        Column("seq", BigInteger, Identity(), nullable=False),
        Column("type", Text, nullable=False),
        Column("payload", JSONB, nullable=False),  # the whole envelope
        Column("aggregate_id", Text, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Index("ix_outbox_pending_seq", "seq", postgresql_where=text("published_at IS NULL")),
        Index(
            "ix_outbox_pending_aggregate",
            "aggregate_id",
            "seq",
            postgresql_where=text("published_at IS NULL"),
        ),
        Index(
            "ix_outbox_published_at",
            "published_at",
            postgresql_where=text("published_at IS NOT NULL"),
        ),
    )


def processed_events_table(metadata: MetaData) -> Table:
    """The ``processed_events`` table: one row per (consumer, event) already applied."""
    if "processed_events" in metadata.tables:
        return metadata.tables["processed_events"]
    return Table(
        "processed_events",
        metadata,
        Column("consumer", Text, nullable=False),
        Column("event_id", Text, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "event_id", name="pk_processed_events"),
        Index("ix_processed_events_processed_at", "processed_at"),
    )


# Private copies for the statements below; services put their own into their metadata.
_internal = MetaData()
_OUTBOX = outbox_table(_internal)
_PROCESSED = processed_events_table(_internal)


async def emit(
    session: AsyncSession,
    payload: EventPayload,
    *,
    producer: str,
    aggregate_id: str | None = None,
    correlation_id: str | None = None,
) -> EventEnvelope:
    """Add an event to the outbox inside the caller's transaction: how a service emits one.

    It leaves only if the transaction commits: the relay is woken by a NOTIFY that PostgreSQL
    delivers only then. ``aggregate_id`` defaults to the payload's own (``post_id``,
    ``user_id``...), which orders the aggregate's events.
    """
    envelope = make_envelope(payload, producer=producer, correlation_id=correlation_id)
    await session.execute(
        _OUTBOX.insert().values(
            id=envelope.id,
            type=envelope.type,
            payload=envelope.model_dump(mode="json"),
            aggregate_id=aggregate_id if aggregate_id is not None else payload.aggregate_id(),
        )
    )
    await session.execute(select(func.pg_notify(NOTIFY_CHANNEL, "")))
    return envelope


async def mark_processed(session: AsyncSession, event_id: str, consumer: str) -> bool:
    """Record that ``consumer`` applied ``event_id``, in the caller's transaction.

    True when newly recorded (apply the effect in the same transaction); False when the event
    was already processed (skip it). A concurrent duplicate blocks until the first transaction
    ends, so exactly one of them sees True.
    """
    stmt = (
        pg_insert(_PROCESSED)
        .values(consumer=consumer, event_id=event_id)
        .on_conflict_do_nothing()
        .returning(_PROCESSED.c.event_id)
    )
    return (await session.execute(stmt)).first() is not None


async def purge_processed(engine: AsyncEngine, *, older_than: timedelta = timedelta(days=7)) -> int:
    """Forget processed-event records older than ``older_than``; returns how many.

    Redeliveries come within minutes (hours after a long outage), so a week is ample.
    """
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(_PROCESSED).where(_PROCESSED.c.processed_at < func.now() - older_than)
        )
    return int(result.rowcount)


def _asyncpg_dsn(dsn: str) -> str:
    # Accept the SQLAlchemy URL the services are configured with.
    return dsn.replace("postgresql+asyncpg://", "postgresql://", 1)


class _PostgresClaim:
    """Rows locked ``FOR UPDATE SKIP LOCKED`` in the claiming transaction."""

    def __init__(self, conn: AsyncConnection, events: list[PendingEvent]) -> None:
        self._conn = conn
        self.events = events

    async def settle(self, published: Sequence[str], deferred: Mapping[str, float]) -> None:
        # Deferred and unsettled rows stay pending: the commit releases their locks, and the
        # relay's RoutingBackoff leaves the deferred ones out until due.
        if published:
            await self._conn.execute(
                update(_OUTBOX).where(_OUTBOX.c.id.in_(published)).values(published_at=func.now())
            )


class PostgresOutboxStore:
    """The ``outbox`` table as a :class:`common.relay.OutboxStore`, woken by LISTEN/NOTIFY.

    ``dsn`` is used for the dedicated LISTEN connection (asyncpg or SQLAlchemy form). The
    purge deletes rows published more than ``outbox_retention`` ago and, when
    ``processed_retention`` is given (a service that consumes events), the processed-event
    records older than that.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        dsn: str,
        outbox_retention: timedelta = timedelta(hours=24),
        processed_retention: timedelta | None = None,
        max_backoff: float = 30.0,
    ) -> None:
        self._engine = engine
        self._dsn = _asyncpg_dsn(dsn)
        self._outbox_retention = outbox_retention
        self._processed_retention = processed_retention
        self._max_backoff = max_backoff
        self.listening = False  # whether the LISTEN connection is up (for tests and health)

    @contextlib.asynccontextmanager
    async def claim(
        self, limit: int, *, exclude_ids: Sequence[str], exclude_aggregates: Sequence[str]
    ) -> AsyncIterator[_PostgresClaim]:
        query = (
            select(_OUTBOX.c.id, _OUTBOX.c.seq, _OUTBOX.c.payload, _OUTBOX.c.aggregate_id)
            .where(_OUTBOX.c.published_at.is_(None))
            .order_by(_OUTBOX.c.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if exclude_ids:
            query = query.where(_OUTBOX.c.id.not_in(exclude_ids))
        if exclude_aggregates:
            query = query.where(
                or_(
                    _OUTBOX.c.aggregate_id.is_(None),
                    _OUTBOX.c.aggregate_id.not_in(exclude_aggregates),
                )
            )
        async with self._engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            held_back = await self._aggregates_locked_elsewhere(conn, rows) if rows else set()
            yield _PostgresClaim(
                conn,
                [
                    PendingEvent(id=row.id, payload=row.payload, aggregate_id=row.aggregate_id)
                    for row in rows
                    if row.aggregate_id is None or row.aggregate_id not in held_back
                ],
            )

    async def _aggregates_locked_elsewhere(self, conn: AsyncConnection, rows: Any) -> set[str]:
        """Aggregates with an earlier pending row outside this batch (locked by another relay,
        or committed late): publishing theirs now would overtake it."""
        aggregates = {r.aggregate_id for r in rows if r.aggregate_id is not None}
        if not aggregates:
            return set()
        result = await conn.execute(
            select(_OUTBOX.c.aggregate_id)
            .distinct()
            .where(
                _OUTBOX.c.published_at.is_(None),
                _OUTBOX.c.aggregate_id.in_(aggregates),
                _OUTBOX.c.seq < max(r.seq for r in rows),
                _OUTBOX.c.id.not_in([r.id for r in rows]),
            )
        )
        return {str(a) for (a,) in result.all()}

    async def purge(self) -> int:
        purged = await self.purge_published()
        if self._processed_retention is not None:
            purged += await purge_processed(self._engine, older_than=self._processed_retention)
        return purged

    async def purge_published(self) -> int:
        """Delete rows published more than the retention period ago; returns how many."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(_OUTBOX).where(_OUTBOX.c.published_at < func.now() - self._outbox_retention)
            )
        return int(result.rowcount)

    async def watch(self, wake: Callable[[], None]) -> None:
        """Keep a LISTEN connection open, reconnecting with backoff; polling covers the gaps."""
        backoff = 0.5
        while True:
            try:
                await self._listen_once(wake)
                backoff = 0.5
            except Exception as exc:
                _log.warning("outbox_listen_failed", error=repr(exc)[:500], retry_in=backoff)
            finally:
                self.listening = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _listen_once(self, wake: Callable[[], None]) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=10)
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_args: wake())
            self.listening = True
            wake()  # catch up on whatever was written while not listening
            while not await wait_for_event(lost, 30):
                # A half-open TCP connection never reports its loss by itself.
                await conn.execute("SELECT 1", timeout=10)
        finally:
            conn.terminate()


class OutboxRelay(Relay):
    """The relay of a service's PostgreSQL outbox (:class:`common.relay.Relay` on
    :class:`PostgresOutboxStore`).

    Sent rows are deleted ``retention_s`` after publication; with ``processed_retention_s``
    (a service that consumes events) its processed-event records older than that go too. Both
    are purged every ``cleanup_interval`` s.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: Publisher,
        *,
        dsn: str,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        retention_s: float = 86_400.0,
        processed_retention_s: float | None = None,
        cleanup_interval: float = 600.0,
        max_backoff: float = 30.0,
        stop_timeout: float = 10.0,
        unroutable_backoff: float = 1.0,
    ) -> None:
        self.store = PostgresOutboxStore(
            engine,
            dsn=dsn,
            outbox_retention=timedelta(seconds=retention_s),
            processed_retention=(
                None if processed_retention_s is None else timedelta(seconds=processed_retention_s)
            ),
            max_backoff=max_backoff,
        )
        super().__init__(
            self.store,
            publisher,
            name="outbox-relay",
            batch_size=batch_size,
            poll_interval=poll_interval,
            max_backoff=max_backoff,
            stop_timeout=stop_timeout,
            unroutable_backoff=unroutable_backoff,
            unroutable_max_backoff=max_backoff,
            purge_interval=cleanup_interval,
        )

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up (for tests and health)."""
        return self.store.listening

    async def purge_published(self) -> int:
        """Delete rows published more than the retention period ago; returns how many."""
        return await self.store.purge_published()
