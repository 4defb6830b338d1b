"""PostgreSQL transactional outbox and processed-event guard.

A state change and its events commit in one transaction (:func:`add_event`); the
:class:`OutboxRelay` later publishes pending rows in ``seq`` order with publisher confirms and
marks them sent. The API therefore keeps working while RabbitMQ is down, and nothing written is
lost. A crash between publish and mark republishes a row: consumers are idempotent
(:func:`mark_processed`).

Several relay replicas may run: each pass locks its rows with ``FOR UPDATE SKIP LOCKED``, so a
row is published by one replica in the normal case, and an aggregate whose earlier row is
locked by another replica is left for a later pass, which keeps per-aggregate order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from typing import Any, Final, Literal

import asyncpg
from pydantic import ValidationError
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
from common.messaging import (
    Publisher,
    RoutingBackoff,
    UnroutableError,
    claim_once,
    has_consumers,
    release_claim,
)

__all__ = [
    "NOTIFY_CHANNEL",
    "OutboxRelay",
    "add_event",
    "claim_once",
    "mark_processed",
    "outbox_table",
    "processed_events_table",
    "purge_processed",
    "release_claim",
]

NOTIFY_CHANNEL: Final = "murmur_outbox"

# What became of one publish: confirmed, unroutable and nobody consumes the type (done too), or
# unroutable although a service consumes it (its queue is not declared yet: retry later).
PublishOutcome = Literal["sent", "no_consumers", "not_routable_yet"]

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


async def add_event(
    session: AsyncSession,
    payload: EventPayload,
    *,
    producer: str,
    aggregate_id: str | None = None,
    correlation_id: str | None = None,
) -> EventEnvelope:
    """Write an event into the outbox inside the caller's transaction.

    The relay is woken by a NOTIFY that PostgreSQL delivers only when (and if) the transaction
    commits. ``aggregate_id`` defaults to the payload's own (``post_id``, ``user_id``...).
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


class OutboxRelay:
    """Publishes the outbox: woken by LISTEN/NOTIFY, polling every ``poll_interval`` anyway.

    ``dsn`` is used for the dedicated LISTEN connection (asyncpg or SQLAlchemy form). Sent rows
    are deleted ``retention_hours`` after publication, checked every ``cleanup_interval`` s.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: Publisher,
        *,
        dsn: str,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        retention_hours: float = 24.0,
        cleanup_interval: float = 600.0,
        max_backoff: float = 30.0,
        stop_timeout: float = 10.0,
        unroutable_backoff: float = 1.0,
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._dsn = _asyncpg_dsn(dsn)
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._retention = timedelta(hours=retention_hours)
        self._cleanup_interval = cleanup_interval
        self._max_backoff = max_backoff
        self._stop_timeout = stop_timeout
        self._routing = RoutingBackoff(initial_s=unroutable_backoff, max_s=max_backoff)
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = False  # whether the LISTEN connection is up (for tests and health)

    async def start(self) -> None:
        """Run in the background; RabbitMQ or PostgreSQL may be down, the relay keeps trying."""
        if self._tasks:
            return
        self._stopping = False
        self._stop_requested.clear()
        self._tasks = [
            asyncio.create_task(self._run(), name="outbox-relay"),
            asyncio.create_task(self._listen(), name="outbox-listen"),
        ]

    async def stop(self) -> None:
        """Finish the current pass (bounded by ``stop_timeout``), then stop."""
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        run, listen = tasks
        listen.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run), self._stop_timeout)
        run.cancel()
        await asyncio.gather(run, listen, return_exceptions=True)

    def wake(self) -> None:
        """Ask for a pass now (as a NOTIFY would)."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """One pass: publish up to ``batch_size`` pending rows in order; returns how many.

        Raises the publish error (after marking what was published) when RabbitMQ fails. A row
        returned as unroutable while a service consumes its type stays pending and is retried
        with growing delay; until then the later rows of its aggregate wait, others go on.
        """
        failure: Exception | None = None
        waiting_ids, waiting_aggregates = self._routing.waiting()
        query = (
            select(_OUTBOX.c.id, _OUTBOX.c.seq, _OUTBOX.c.payload, _OUTBOX.c.aggregate_id)
            .where(_OUTBOX.c.published_at.is_(None))
            .order_by(_OUTBOX.c.seq)
            .limit(self._batch_size)
            .with_for_update(skip_locked=True)
        )
        if waiting_ids:
            query = query.where(_OUTBOX.c.id.not_in(waiting_ids))
        if waiting_aggregates:
            query = query.where(
                or_(
                    _OUTBOX.c.aggregate_id.is_(None),
                    _OUTBOX.c.aggregate_id.not_in(waiting_aggregates),
                )
            )
        async with self._engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return 0
            held_back = await self._aggregates_locked_elsewhere(conn, rows)
            retrying = self._routing.retrying()
            retried: set[str] = set()
            batch: list[tuple[str, str | None, EventEnvelope | None]] = []
            for row in rows:
                if row.aggregate_id is not None and row.aggregate_id in held_back:
                    continue
                if row.aggregate_id in retrying:
                    if row.aggregate_id in retried:
                        # The rest follows once the retried event went through (no repeated
                        # duplicates of them while it keeps coming back).
                        self._wake.set()
                        continue
                    retried.add(row.aggregate_id)
                try:
                    envelope: EventEnvelope | None = EventEnvelope.model_validate(row.payload)
                except ValidationError as exc:
                    # Cannot happen for rows written by add_event; never let one block the rest.
                    _log.error("outbox_row_invalid", event_id=row.id, error=str(exc)[:500])
                    envelope = None
                batch.append((row.id, row.aggregate_id, envelope))
            # Pipelined: publishes start in seq order and one channel keeps that order, while
            # the confirms are awaited together.
            results = await asyncio.gather(
                *(self._publish(envelope) for _, _, envelope in batch), return_exceptions=True
            )
            done: list[str] = []
            blocked: set[str] = set()
            for (event_id, aggregate_id, envelope), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result
                    # Rows after the first failure are sent again after it, even if confirmed
                    # now, so each aggregate still ends on its latest event (consumers
                    # tolerate the duplicates).
                    failure = result
                    break
                if result == "not_routable_yet":
                    assert envelope is not None
                    self._defer(event_id, aggregate_id, envelope)
                    # Left out of the next batch until due: go on with what comes after it.
                    self._wake.set()
                    if aggregate_id is not None:
                        blocked.add(aggregate_id)
                    continue
                if aggregate_id is not None and aggregate_id in blocked:
                    continue  # sent again after the event before it, as after a failure
                self._routing.clear(event_id)
                done.append(event_id)
            if done:
                await conn.execute(
                    update(_OUTBOX).where(_OUTBOX.c.id.in_(done)).values(published_at=func.now())
                )
        if failure is not None:
            raise failure
        return len(done)

    def _defer(self, event_id: str, aggregate_id: str | None, envelope: EventEnvelope) -> None:
        delay = self._routing.defer(event_id, aggregate_id)
        _log.warning(
            "outbox_event_not_routable_yet",
            event_id=event_id,
            type=envelope.type,
            attempt=self._routing.attempts(event_id),
            retry_in=delay,
        )

    async def _publish(self, envelope: EventEnvelope | None) -> PublishOutcome:
        if envelope is None:
            return "sent"
        try:
            await self._publisher.publish(envelope)
        except UnroutableError:
            if has_consumers(envelope.type):
                return "not_routable_yet"
            # Nobody consumes this type (e.g. user.email_verified): nothing to deliver.
            _log.info("outbox_event_unconsumed", event_id=envelope.id, type=envelope.type)
            return "no_consumers"
        return "sent"

    async def purge_published(self) -> int:
        """Delete rows published more than the retention period ago; returns how many."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(_OUTBOX).where(_OUTBOX.c.published_at < func.now() - self._retention)
            )
        return int(result.rowcount)

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

    async def _run(self) -> None:
        backoff = 0.0
        next_cleanup = time.monotonic()
        while not self._stopping:
            self._wake.clear()
            try:
                while await self.publish_pending() >= self._batch_size and not self._stopping:
                    pass
                if time.monotonic() >= next_cleanup:
                    next_cleanup = time.monotonic() + self._cleanup_interval
                    purged = await self.purge_published()
                    if purged:
                        _log.info("outbox_purged", rows=purged)
                backoff = 0.0
                wait = self._poll_interval
                due = self._routing.next_due_in()
                if due is not None:
                    wait = min(wait, due + 0.01)
            except Exception as exc:
                backoff = min(max(backoff * 2, 0.5), self._max_backoff)
                wait = backoff
                _log.warning("outbox_publish_failed", error=repr(exc)[:500], retry_in=backoff)
            if self._stopping:
                break
            if backoff:
                # Backing off: a NOTIFY must not turn into a tight retry loop; stop may.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), wait)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)

    async def _listen(self) -> None:
        """Keep a LISTEN connection open, reconnecting with backoff; polling covers the gaps."""
        backoff = 0.5
        while True:
            try:
                await self._listen_once()
                backoff = 0.5
            except Exception as exc:
                _log.warning("outbox_listen_failed", error=repr(exc)[:500], retry_in=backoff)
            finally:
                self.listening = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=10)
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_args: self._wake.set())
            self.listening = True
            self._wake.set()  # catch up on whatever was written while not listening
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), 30)
                if not lost.is_set():
                    # A half-open TCP connection never reports its loss by itself.
                    await conn.execute("SELECT 1", timeout=10)
        finally:
            conn.terminate()
