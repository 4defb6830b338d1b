"""Event handlers, registered by event model class: what a service consumes.

::

    handlers = EventHandlers()

    @handlers.on(UserRegistered, UserUpdated)
    async def on_profile(event: UserRegistered | UserUpdated, envelope: EventEnvelope) -> None:
        ...

A handler receives the payload already parsed and validated (by the consumer, once) and the
envelope it came in, for its id (idempotency), ``occurred_at`` and correlation id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from common.events import EVENT_TYPES, EventDecodeError, EventEnvelope, EventPayload, parse_payload

__all__ = ["EventHandler", "EventHandlers"]

P = TypeVar("P", bound=EventPayload)
Q = TypeVar("Q", bound=EventPayload)

EventHandler = Callable[[P, EventEnvelope], Awaitable[None]]


class EventHandlers:
    """The handler of each consumed event type, keyed by the event model class."""

    def __init__(self) -> None:
        self._handlers: dict[str, EventHandler[Any]] = {}

    @overload
    def on(self, event: type[P], /) -> Callable[[EventHandler[P]], EventHandler[P]]: ...

    @overload
    def on(
        self, event: type[P], other: type[Q], /
    ) -> Callable[[EventHandler[P | Q]], EventHandler[P | Q]]: ...

    def on(self, *events: type[EventPayload]) -> Callable[[EventHandler[Any]], EventHandler[Any]]:
        """Register the decorated coroutine as the handler of ``events``."""
        for cls in events:
            if EVENT_TYPES.get(cls.event_type) is not cls:
                raise ValueError(f"{cls.__name__} is not an event model of common.events")
            if cls.event_type in self._handlers:
                raise ValueError(f"{cls.event_type} already has a handler")

        def register(handler: EventHandler[Any]) -> EventHandler[Any]:
            for cls in events:
                self._handlers[cls.event_type] = handler
            return handler

        return register

    @property
    def event_types(self) -> list[str]:
        """The routing keys to bind, sorted."""
        return sorted(self._handlers)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._handlers

    def resolve(self, envelope: EventEnvelope) -> tuple[EventHandler[Any], EventPayload]:
        """The handler of ``envelope`` and its validated payload.

        Raises :class:`~common.events.EventDecodeError` for a type without a handler or data
        its model refuses: such a message can never be handled.
        """
        handler = self._handlers.get(envelope.type)
        if handler is None:
            raise EventDecodeError(f"no handler for event type {envelope.type!r}")
        return handler, parse_payload(envelope)

    async def handle(self, envelope: EventEnvelope) -> None:
        """Parse, validate and handle one envelope, as the consumer does for each message."""
        handler, payload = self.resolve(envelope)
        await handler(payload, envelope)
