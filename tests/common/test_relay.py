"""The store-independent relay loop (common.relay), on an in-memory store and publisher.

The real stores are tested against the real servers: PostgreSQL in tests/common/test_outbox.py,
Neo4j in tests/network_service/test_outbox_routing.py and test_events.py; stop() racing a
wake-up for each store in test_outbox.py and tests/network_service/test_relay_stop.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, cast

import pytest

from common.events import EventEnvelope, UserDeleted, make_envelope
from common.messaging.publisher import Publisher
from common.relay import PendingEvent, Relay, wait_for_event


class _Claim:
    def __init__(self, store: MemoryStore, events: list[PendingEvent]) -> None:
        self._store = store
        self.events = events

    async def settle(self, published: Sequence[str], deferred: Mapping[str, float]) -> None:
        self._store.settled.append(list(published))
        for event_id in published:
            self._store.rows.pop(event_id, None)


class MemoryStore:
    """An outbox in a dict, in insertion order (one aggregate per event unless given)."""

    def __init__(self) -> None:
        self.rows: dict[str, PendingEvent] = {}
        self.settled: list[list[str]] = []
        self.claims = 0

    def add(self, event_id: str, payload: str | dict[str, Any], aggregate: str) -> None:
        self.rows[event_id] = PendingEvent(event_id, payload, aggregate)

    @contextlib.asynccontextmanager
    async def claim(
        self, limit: int, *, exclude_ids: Sequence[str], exclude_aggregates: Sequence[str]
    ) -> AsyncIterator[_Claim]:
        self.claims += 1
        yield _Claim(self, list(self.rows.values())[:limit])

    async def watch(self, wake: Callable[[], None]) -> None:
        return None

    async def purge(self) -> int:
        return 0


class MemoryPublisher:
    def __init__(self) -> None:
        self.sent: list[EventEnvelope] = []

    async def publish(self, envelope: EventEnvelope) -> None:
        self.sent.append(envelope)


def relay_on(store: MemoryStore, publisher: MemoryPublisher, **kw: Any) -> Relay:
    return Relay(store, cast(Publisher, publisher), **kw)


async def test_wait_for_event_honours_a_cancellation_racing_the_event() -> None:
    # asyncio.wait_for (Python 3.11) returns normally here, swallowing the cancellation: a
    # relay sleeping in it outlived stop() whenever a wake-up came with the stop.
    for _ in range(20):
        event = asyncio.Event()
        waiting = asyncio.create_task(wait_for_event(event, 5.0))
        await asyncio.sleep(0)
        event.set()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting


async def test_run_relays_until_cancelled_then_stops() -> None:
    store = MemoryStore()
    publisher = MemoryPublisher()
    relay = relay_on(store, publisher, poll_interval=0.01)
    running = asyncio.create_task(relay.run())
    envelope = make_envelope(UserDeleted(user_id="u1"), producer="auth")
    store.add(envelope.id, envelope.model_dump_json(), "u1")
    relay.wake()
    while store.rows:
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    claims = store.claims
    await asyncio.sleep(0.05)
    assert store.claims == claims
    assert [e.id for e in publisher.sent] == [envelope.id]


async def test_an_invalid_stored_event_is_settled_not_retried_and_blocks_nothing() -> None:
    # Neither a "sent" nor a "skipped" in disguise: it is never published, and it is settled
    # so that it cannot hold back its aggregate (or, as once in the Neo4j relay, every pass).
    store = MemoryStore()
    publisher = MemoryPublisher()
    later = make_envelope(UserDeleted(user_id="u1"), producer="auth")
    store.add("broken-json", "{not json", "u1")
    store.add("broken-shape", {"id": "x"}, "u1")
    store.add(later.id, later.model_dump(mode="json"), "u1")
    relay = relay_on(store, publisher)

    assert await relay.publish_pending() == 3
    assert store.settled == [["broken-json", "broken-shape", later.id]]
    assert [e.id for e in publisher.sent] == [later.id]
    assert await relay.publish_pending() == 0
