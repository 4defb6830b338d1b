"""Relays Neo4j outbox nodes to RabbitMQ: claim, publish with confirms, then delete.

An event is deleted only after the broker confirmed it, so a crash in between publishes it
again (consumers are idempotent); it is never published before its transaction committed,
because uncommitted nodes are invisible to the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Literal

from common.errors import dependency_errors
from common.events import EventEnvelope
from common.ids import new_id
from common.logging import get_logger
from common.messaging import Publisher, RoutingBackoff, UnroutableError, has_consumers
from network_service.repository import outbox
from network_service.repository.driver import Graph

__all__ = ["Neo4jOutboxRelay"]

log = get_logger(__name__)

_MAX_BACKOFF_S = 5.0

EnvelopeOrSkip = EventEnvelope | None
PublishOutcome = Literal["sent", "skipped", "no_consumers", "not_routable_yet"]


class Neo4jOutboxRelay:
    """Polls the outbox (Neo4j Community has no notifications), and wakes early on :meth:`wake`."""

    def __init__(
        self,
        graph_db: Graph,
        publisher: Publisher,
        *,
        batch_size: int = 200,
        poll_interval_s: float = 0.2,
        claim_ttl_s: float = 30.0,
        unroutable_backoff_s: float = 1.0,
        unroutable_max_backoff_s: float = 30.0,
    ) -> None:
        self._graph = graph_db
        self._publisher = publisher
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._claim_ttl_ms = int(claim_ttl_s * 1000)
        self.relay_id = new_id()
        self._routing = RoutingBackoff(
            initial_s=unroutable_backoff_s, max_s=unroutable_max_backoff_s
        )
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Called after a commit that wrote an outbox event."""
        self._wakeup.set()

    async def publish_pending(self) -> int:
        """One pass: claim a batch, publish it in order, delete what was confirmed.

        An event returned as unroutable while a service consumes its type (that consumer has
        not declared its queue yet) stays, claimed until its retry time; the later events of
        its aggregate wait behind it, other aggregates go on.
        """
        now_ms = int(time.time() * 1000)
        _, waiting_aggregates = self._routing.waiting()
        claimed = await self._graph.write(
            outbox.claim_batch,
            relay_id=self.relay_id,
            now_ms=now_ms,
            until_ms=now_ms + self._claim_ttl_ms,
            limit=self._batch_size,
            exclude_aggregates=waiting_aggregates,
        )
        if not claimed:
            return 0
        retrying = self._routing.retrying()
        retried: set[str | None] = set()
        batch: list[tuple[outbox.PendingEvent, EnvelopeOrSkip]] = []
        for event in claimed:
            if event.aggregate_id in retrying:
                if event.aggregate_id in retried:
                    # Follows once the retried event went through, without repeated duplicates.
                    batch.append((event, None))
                    self._wakeup.set()
                    continue
                retried.add(event.aggregate_id)
            batch.append((event, EventEnvelope.model_validate_json(event.payload)))
        done: list[str] = []
        deferred: dict[str, int] = {}
        try:
            # Pipelined like common.outbox: publishes start in order on one channel (which keeps
            # that order) and their confirms are awaited together.
            results = await asyncio.gather(
                *(self._publish(envelope) for _, envelope in batch), return_exceptions=True
            )
            failure: Exception | None = None
            blocked: set[str | None] = set()
            for (event, envelope), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result
                    # Events after the first failure go again later, even if confirmed now,
                    # so each aggregate still ends on its latest event (duplicates are fine).
                    failure = result
                    break
                if envelope is None:
                    continue  # skipped: released below
                if result == "not_routable_yet":
                    delay = self._routing.defer(event.id, event.aggregate_id)
                    deferred[event.id] = int((time.time() + delay) * 1000)
                    blocked.add(event.aggregate_id)
                    self._wakeup.set()  # the rest goes on now; this one is left out until due
                    log.warning(
                        "outbox_event_not_routable_yet",
                        event_id=event.id,
                        type=envelope.type,
                        attempt=self._routing.attempts(event.id),
                        retry_in=delay,
                    )
                    continue
                if event.aggregate_id in blocked:
                    continue  # sent again after the event before it, as after a failure
                self._routing.clear(event.id)
                done.append(event.id)
            if failure is not None:
                raise failure
        finally:
            if done:
                await self._graph.write(outbox.delete_events, relay_id=self.relay_id, ids=done)
            if deferred:
                with contextlib.suppress(*dependency_errors()):
                    await self._graph.write(
                        outbox.defer_events, relay_id=self.relay_id, until=deferred
                    )
            settled = set(done) | set(deferred)
            rest = [event.id for event in claimed if event.id not in settled]
            if rest:
                # Released at once so the next pass (or another relay) retries them in order.
                with contextlib.suppress(*dependency_errors()):
                    await self._graph.write(outbox.release_claims, relay_id=self.relay_id, ids=rest)
        return len(done)

    async def _publish(self, envelope: EventEnvelope | None) -> PublishOutcome:
        if envelope is None:
            return "skipped"
        try:
            await self._publisher.publish(envelope)
        except UnroutableError:
            if has_consumers(envelope.type):
                return "not_routable_yet"
            # Nobody consumes this type: nothing to deliver, and holding it back would stall
            # every later event of its aggregate.
            log.info("outbox_event_unconsumed", event_id=envelope.id, type=envelope.type)
            return "no_consumers"
        return "sent"

    async def run(self) -> None:
        """Relay until cancelled, backing off while Neo4j or RabbitMQ is unreachable."""
        backoff = self._poll_interval_s
        while True:
            try:
                published = await self.publish_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox_relay_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                await self._sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            backoff = self._poll_interval_s
            if published >= self._batch_size:
                continue  # more may be waiting
            await self._sleep(self._poll_interval_s)

    async def _sleep(self, seconds: float) -> None:
        # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives just as
        # the wake-up is set, and the relay would outlive stop() (which then hangs).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()
        self._wakeup.clear()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="network-outbox-relay")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
