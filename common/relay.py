"""The one outbox relay: claim a batch from a store, publish it in order, settle it.

A service writes its events into an outbox in the transaction of the change (a PostgreSQL
table, :mod:`common.outbox`; Neo4j nodes, network_service). :class:`Relay` moves them to
RabbitMQ with publisher confirms, whatever the store: the store only says how to claim pending
events, how to settle a batch, and optionally how to be woken and what to purge.

An event is settled as published only after the broker confirmed it, so a crash in between
publishes it again (consumers are idempotent). Per-aggregate order is kept: the store claims
an aggregate's events in order, and after a failure or a deferral the later events of that
aggregate are published again after it (duplicates, never overtaking).

An event the broker returns as unroutable although a service consumes its type (that service
has not declared its queue yet) is kept and retried with growing delay
(:class:`common.messaging.RoutingBackoff`); meanwhile the later events of its aggregate wait
and other aggregates flow on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from opentelemetry import trace
from pydantic import ValidationError

from common.events import EventEnvelope, consumers_of
from common.logging import get_logger
from common.messaging.publisher import Publisher, UnroutableError
from common.messaging.routing import RoutingBackoff
from common.tracing import remote_parent

__all__ = [
    "Claim",
    "OutboxStore",
    "PendingEvent",
    "Relay",
    "wait_for_event",
]

_log = get_logger("common.relay")
_tracer = trace.get_tracer("common.relay")

# What became of one event: confirmed; unroutable and nobody consumes its type (done too);
# unroutable although a service consumes it (its queue is not declared yet: retry later);
# its stored payload is not an envelope (done: it can never be published, see _parse).
PublishOutcome = Literal["sent", "no_consumers", "not_routable_yet", "invalid"]


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """One claimed outbox event: ``payload`` is the stored envelope (JSON text or decoded)."""

    id: str
    payload: str | Mapping[str, Any]
    aggregate_id: str | None = None


class Claim(Protocol):
    """A batch claimed from a store, held until :meth:`settle` and the context's exit."""

    @property
    def events(self) -> Sequence[PendingEvent]:
        """The claimed events, each aggregate's in order (and none whose earlier event is
        pending outside the batch)."""
        ...

    async def settle(self, published: Sequence[str], deferred: Mapping[str, float]) -> None:
        """``published`` are done (delete or mark them); ``deferred`` (id -> seconds) wait
        that long before any relay takes them again; every other claimed event is released
        for the next pass. Called once per batch, also when publishing failed."""
        ...


class OutboxStore(Protocol):
    """Where the outbox lives; :class:`Relay` does the rest."""

    def claim(
        self, limit: int, *, exclude_ids: Sequence[str], exclude_aggregates: Sequence[str]
    ) -> AbstractAsyncContextManager[Claim]:
        """Claim up to ``limit`` pending events, leaving out ``exclude_ids`` and every event of
        ``exclude_aggregates`` (deferred: their retry time has not come) before the limit."""
        ...

    async def watch(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when new events commit, until cancelled; return at once when the
        store has no notifications (the relay polls, and in-process writers call
        :meth:`Relay.wake`)."""
        ...

    async def purge(self) -> int:
        """Housekeeping on the relay's schedule: forget what is kept past its retention
        (published rows, processed-event records); returns how many records went."""
        ...


async def wait_for_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` passed; True when it was set.

    Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that arrives just as
    the event is set, so a task cancelled by ``stop()`` would run on (and ``stop()`` hang).
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


# An event of this pass and its envelope (None when the stored payload is invalid).
_Planned = tuple[PendingEvent, EventEnvelope | None]


class Relay:
    """Publishes a store's outbox: a pass on every wake-up, every ``poll_interval`` s anyway.

    ``start()``/``stop()`` run it as background tasks; ``run()`` is the same for a supervisor
    that hosts it as one task (cancel it to stop). A failing pass (broker or store down) is
    retried with back-off doubling up to ``max_backoff`` s, during which wake-ups are ignored
    (no tight loop on every commit). The back-off ends, and starts again from nothing, as soon
    as the publisher's connection is back after a broker outage: the events written meanwhile
    go out within seconds, not at the end of a 30 s wait. While the publisher has never
    connected there is no reconnect to be told of, so the wait is then capped at its reconnect
    interval. ``stop()`` lets the current pass finish (at most ``stop_timeout`` s) so its batch
    is settled, then cancels what is left.
    """

    def __init__(
        self,
        store: OutboxStore,
        publisher: Publisher,
        *,
        name: str = "outbox-relay",
        batch_size: int = 100,
        poll_interval: float = 1.0,
        max_backoff: float = 30.0,
        stop_timeout: float = 10.0,
        unroutable_backoff: float = 1.0,
        unroutable_max_backoff: float = 30.0,
        purge_interval: float = 600.0,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._name = name
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._stop_timeout = stop_timeout
        self._purge_interval = purge_interval
        self._routing = RoutingBackoff(initial_s=unroutable_backoff, max_s=unroutable_max_backoff)
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_requested = asyncio.Event()
        # Set by stop() and by the publisher's reconnect: either ends a back-off.
        self._resume = asyncio.Event()
        self._broker_back = False
        self._listening = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Run in the background; the broker or the store may be down, the relay keeps trying."""
        if self._tasks:
            return
        self._stopping = False
        self._stop_requested.clear()
        self._resume.clear()
        self._tasks = [
            asyncio.create_task(self._loop(), name=self._name),
            asyncio.create_task(self._store.watch(self.wake), name=f"{self._name}-watch"),
        ]

    async def stop(self) -> None:
        """Finish the current pass (bounded by ``stop_timeout``), then stop."""
        self._stopping = True
        self._stop_requested.set()
        self._resume.set()
        self._wake.set()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        loop, watch = tasks
        watch.cancel()
        await asyncio.wait({loop}, timeout=self._stop_timeout)
        loop.cancel()
        await asyncio.gather(loop, watch, return_exceptions=True)

    async def run(self) -> None:
        """Relay until cancelled, then stop as :meth:`stop` does."""
        await self.start()
        loop = self._tasks[0]
        try:
            # Shielded: a cancellation of run() ends in stop(), which settles the batch.
            await asyncio.shield(loop)
        finally:
            await self.stop()

    def wake(self) -> None:
        """Ask for a pass now (after a commit that wrote an outbox event)."""
        self._wake.set()

    def _on_broker_back(self) -> None:
        self._broker_back = True
        self._resume.set()
        self._wake.set()

    def _backoff_wait(self, backoff: float) -> float:
        """How long to wait before retrying after a failed pass."""
        if not self._listening:
            # Registered on the first failure: only a relay that failed needs telling.
            self._publisher.add_reconnect_listener(self._on_broker_back)
            self._listening = True
        if self._publisher.connection is None:
            # Not connected yet (the broker was down from the start): no reconnect will be
            # reported, so try as often as aio-pika's robust connection would.
            return min(backoff, self._publisher.reconnect_interval)
        return backoff

    async def purge(self) -> int:
        """The store's housekeeping now (the relay also runs it every ``purge_interval`` s)."""
        return await self._store.purge()

    async def publish_pending(self) -> int:
        """One pass: publish up to ``batch_size`` pending events in order; returns how many
        were settled as published.

        Raises the publish error (after settling what was confirmed) when the broker fails.
        """
        waiting_ids, waiting_aggregates = self._routing.waiting()
        failure: Exception | None = None
        async with self._store.claim(
            self._batch_size, exclude_ids=waiting_ids, exclude_aggregates=waiting_aggregates
        ) as claim:
            if not claim.events:
                return 0
            batch = self._plan(claim.events)
            done: list[str] = []
            deferred: dict[str, float] = {}
            try:
                # Pipelined: publishes start in order and one channel keeps that order, while
                # the confirms are awaited together.
                results = await asyncio.gather(
                    *(self._publish(envelope) for _, envelope in batch), return_exceptions=True
                )
                blocked: set[str] = set()
                for (event, envelope), result in zip(batch, results, strict=True):
                    if isinstance(result, BaseException):
                        if not isinstance(result, Exception):
                            raise result
                        # Events after the first failure are sent again after it, even if
                        # confirmed now, so each aggregate still ends on its latest event
                        # (consumers tolerate the duplicates).
                        failure = result
                        break
                    if result == "not_routable_yet":
                        assert envelope is not None
                        deferred[event.id] = self._defer(event, envelope)
                        if event.aggregate_id is not None:
                            blocked.add(event.aggregate_id)
                        continue
                    if event.aggregate_id is not None and event.aggregate_id in blocked:
                        continue  # sent again after the event before it, as after a failure
                    self._routing.clear(event.id)
                    done.append(event.id)
            finally:
                await claim.settle(done, deferred)
        if failure is not None:
            raise failure
        return len(done)

    def _plan(
        self, events: Sequence[PendingEvent]
    ) -> list[tuple[PendingEvent, EventEnvelope | None]]:
        """The events to publish in this pass, each with its envelope (None when invalid)."""
        retrying = self._routing.retrying()
        retried: set[str] = set()
        batch: list[_Planned] = []
        for event in events:
            if event.aggregate_id is not None and event.aggregate_id in retrying:
                if event.aggregate_id in retried:
                    # Released: it follows once the retried event went through, without
                    # repeated duplicates while that one keeps coming back.
                    self._wake.set()
                    continue
                retried.add(event.aggregate_id)
            batch.append((event, self._parse(event)))
        return batch

    @staticmethod
    def _parse(event: PendingEvent) -> EventEnvelope | None:
        try:
            if isinstance(event.payload, str):
                return EventEnvelope.model_validate_json(event.payload)
            return EventEnvelope.model_validate(event.payload)
        except ValidationError as exc:
            # Cannot happen for events the services' emit wrote. It can never be
            # published, so it is settled (and logged) rather than retried forever, which
            # would stall every later event of its aggregate.
            _log.error("outbox_row_invalid", event_id=event.id, error=str(exc)[:500])
            return None

    def _defer(self, event: PendingEvent, envelope: EventEnvelope) -> float:
        delay = self._routing.defer(event.id, event.aggregate_id)
        _log.warning(
            "outbox_event_not_routable_yet",
            event_id=event.id,
            type=envelope.type,
            attempt=self._routing.attempts(event.id),
            retry_in=delay,
        )
        self._wake.set()  # the rest goes on now; this one is left out until due
        return delay

    async def _publish(self, envelope: EventEnvelope | None) -> PublishOutcome:
        if envelope is None:
            return "invalid"
        try:
            # In the trace of the request that emitted the event (aio-pika's span is a child).
            with (
                remote_parent(envelope.trace),
                _tracer.start_as_current_span(
                    "outbox.publish", attributes={"messaging.message.id": envelope.id}
                ),
            ):
                await self._publisher.publish(envelope)
        except UnroutableError:
            if consumers_of(envelope.type):
                return "not_routable_yet"
            # Nobody consumes this type (e.g. user.email_verified): nothing to deliver, and
            # holding it back would stall every later event of its aggregate.
            _log.info("outbox_event_unconsumed", event_id=envelope.id, type=envelope.type)
            return "no_consumers"
        return "sent"

    async def _loop(self) -> None:
        backoff = 0.0
        next_purge = time.monotonic()
        while not self._stopping:
            self._wake.clear()
            try:
                while await self.publish_pending() >= self._batch_size and not self._stopping:
                    pass
                backoff = 0.0
                self._broker_back = False  # only a reconnect after a failure ends a back-off
                wait = self._poll_interval
                due = self._routing.next_due_in()
                if due is not None:
                    wait = min(wait, due + 0.01)
            except Exception as exc:
                backoff = min(max(backoff * 2, 0.5), self._max_backoff)
                wait = self._backoff_wait(backoff)
                _log.warning("outbox_publish_failed", error=repr(exc)[:500], retry_in=wait)
            if not self._stopping and time.monotonic() >= next_purge:
                next_purge = time.monotonic() + self._purge_interval
                await self._purge_quietly()
            if self._stopping:
                break
            if not backoff:
                await wait_for_event(self._wake, wait)
                continue
            # Backing off: a wake-up must not turn into a tight retry loop; stop may end it,
            # and so may the broker coming back (a reconnect before this wait counts too).
            if not self._broker_back:
                self._resume.clear()
                await wait_for_event(self._resume, wait)
            if self._broker_back:
                self._broker_back = False
                backoff = 0.0
                _log.info("outbox_relay_broker_back")

    async def _purge_quietly(self) -> None:
        try:
            purged = await self._store.purge()
        except Exception as exc:
            # The store is down: publishing backs off on its own, the purge waits its turn.
            _log.warning("outbox_purge_failed", error=repr(exc)[:500])
            return
        if purged:
            _log.info("outbox_purged", rows=purged)
