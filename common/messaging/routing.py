"""Unroutable events on the relay side: whose type has consumers, and how long each waits.

A publish the broker returns (:class:`~common.messaging.publisher.UnroutableError`) is kept
when its type has consumers (their queue is not declared yet) and retried with growing delay;
types nobody consumes are dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from common.events import consumers_of

__all__ = ["RoutingBackoff", "has_consumers"]


def has_consumers(event_type: str) -> bool:
    """Whether an unroutable publish of ``event_type`` means "queue not declared yet"."""
    return bool(consumers_of(event_type))


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
