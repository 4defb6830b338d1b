"""Event envelope and one versioned pydantic model per event type.

Producers and consumers share these models, so a field rename breaks at type-check time
instead of silently in production. Payloads ignore unknown fields: a newer producer can add
fields without breaking older consumers (bump ``event_version`` only for breaking changes).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from common.ids import new_id
from common.logging import correlation_id
from common.time import Timestamp, utcnow
from common.tracing import trace_headers

__all__ = [
    "CONSUMERS",
    "EVENT_TYPES",
    "CommentCreated",
    "CommentDeleted",
    "EventDecodeError",
    "EventEnvelope",
    "EventPayload",
    "PostCreated",
    "PostDeleted",
    "PostLiked",
    "PostUnliked",
    "PostUpdated",
    "UserDeleted",
    "UserEmailVerified",
    "UserFollowed",
    "UserPasswordResetRequested",
    "UserRegistered",
    "UserUnfollowed",
    "UserUpdated",
    "UserVerificationRequested",
    "consumers_of",
    "make_envelope",
    "parse_payload",
]


class EventDecodeError(ValueError):
    """A message that can never be handled: bad JSON, unknown type or invalid data."""


class EventEnvelope(BaseModel):
    """What travels on the wire. ``id`` is also the AMQP message_id, ``type`` the routing key."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    type: str
    version: int = 1
    occurred_at: Timestamp
    producer: str
    correlation_id: str | None = None
    data: dict[str, Any]
    # The W3C trace context of the code that emitted the event (``traceparent``...), kept in
    # the outbox so that the relay's publish, long after, continues the request's trace.
    # Absent when tracing is off: the wire format is then what it always was.
    trace: dict[str, str] | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_trace(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        if dumped.get("trace") is None:
            dumped.pop("trace", None)
        return dumped

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json_bytes(cls, body: bytes) -> EventEnvelope:
        """Parse a message body; raises :class:`EventDecodeError` for anything malformed."""
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            raise EventDecodeError(f"invalid event envelope: {_summary(exc)}") from exc


class EventPayload(BaseModel):
    """Base of every event's ``data``. Subclasses set ``event_type`` (the routing key)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    event_version: ClassVar[int] = 1
    # Field whose value orders the outbox per aggregate when the producer gives none.
    aggregate_field: ClassVar[str | None] = None

    def aggregate_id(self) -> str | None:
        if self.aggregate_field is None:
            return None
        value = getattr(self, self.aggregate_field)
        return None if value is None else str(value)


class UserRegistered(EventPayload):
    event_type: ClassVar[str] = "user.registered"
    aggregate_field: ClassVar[str | None] = "user_id"
    user_id: str
    username: str
    display_name: str
    email: str


class UserVerificationRequested(EventPayload):
    event_type: ClassVar[str] = "user.verification_requested"
    # 2: the address and the token travel sealed (common.sealing), never in plain text.
    event_version: ClassVar[int] = 2
    aggregate_field: ClassVar[str | None] = "user_id"
    user_id: str
    username: str
    # {"email": ..., "token": ...} sealed for email_service; see common.sealing.
    sealed: str = Field(repr=False)


class UserEmailVerified(EventPayload):
    event_type: ClassVar[str] = "user.email_verified"
    aggregate_field: ClassVar[str | None] = "user_id"
    user_id: str


class UserPasswordResetRequested(EventPayload):
    event_type: ClassVar[str] = "user.password_reset_requested"
    # 2: the address and the token travel sealed (common.sealing), never in plain text.
    event_version: ClassVar[int] = 2
    aggregate_field: ClassVar[str | None] = "user_id"
    user_id: str
    username: str
    # {"email": ..., "token": ...} sealed for email_service; see common.sealing.
    sealed: str = Field(repr=False)


class UserUpdated(EventPayload):
    event_type: ClassVar[str] = "user.updated"
    aggregate_field: ClassVar[str | None] = "user_id"
    user_id: str
    username: str
    display_name: str


class UserDeleted(EventPayload):
    event_type: ClassVar[str] = "user.deleted"
    aggregate_field: ClassVar[str | None] = "user_id"
    user_id: str


class UserFollowed(EventPayload):
    event_type: ClassVar[str] = "user.followed"
    aggregate_field: ClassVar[str | None] = "follower_id"
    follower_id: str
    followee_id: str
    followed_at: Timestamp


class UserUnfollowed(EventPayload):
    event_type: ClassVar[str] = "user.unfollowed"
    aggregate_field: ClassVar[str | None] = "follower_id"
    follower_id: str
    followee_id: str


class PostCreated(EventPayload):
    event_type: ClassVar[str] = "post.created"
    aggregate_field: ClassVar[str | None] = "post_id"
    post_id: str
    author_id: str
    content: str
    created_at: Timestamp
    reply_to_id: str | None = None
    hashtags: list[str] = Field(default_factory=list)
    mention_ids: list[str] = Field(default_factory=list)
    # Optional so the feed can hydrate a new post without calling post_service.
    author_username: str | None = None
    author_display_name: str | None = None


class PostUpdated(EventPayload):
    event_type: ClassVar[str] = "post.updated"
    aggregate_field: ClassVar[str | None] = "post_id"
    post_id: str
    author_id: str
    content: str
    edited_at: Timestamp


class PostDeleted(EventPayload):
    event_type: ClassVar[str] = "post.deleted"
    aggregate_field: ClassVar[str | None] = "post_id"
    post_id: str
    author_id: str


class PostLiked(EventPayload):
    event_type: ClassVar[str] = "post.liked"
    aggregate_field: ClassVar[str | None] = "post_id"
    post_id: str
    post_author_id: str
    user_id: str


class PostUnliked(EventPayload):
    event_type: ClassVar[str] = "post.unliked"
    aggregate_field: ClassVar[str | None] = "post_id"
    post_id: str
    post_author_id: str
    user_id: str


class CommentCreated(EventPayload):
    event_type: ClassVar[str] = "comment.created"
    aggregate_field: ClassVar[str | None] = "post_id"
    comment_id: str
    post_id: str
    post_author_id: str
    author_id: str


class CommentDeleted(EventPayload):
    event_type: ClassVar[str] = "comment.deleted"
    aggregate_field: ClassVar[str | None] = "post_id"
    comment_id: str
    post_id: str
    post_author_id: str
    author_id: str


EVENT_TYPES: dict[str, type[EventPayload]] = {
    cls.event_type: cls
    for cls in (
        UserRegistered,
        UserVerificationRequested,
        UserEmailVerified,
        UserPasswordResetRequested,
        UserUpdated,
        UserDeleted,
        UserFollowed,
        UserUnfollowed,
        PostCreated,
        PostUpdated,
        PostDeleted,
        PostLiked,
        PostUnliked,
        CommentCreated,
        CommentDeleted,
    )
}


_FEED, _EMAIL, _NETWORK, _POST = "feed", "email", "network", "post"

# Which services (their ``Consumer(service=...)`` names) consume each event type. A relay uses it
# to tell "no queue bound yet" (a consumer has not declared its queue: keep the event) from
# "nobody wants this" (mark it sent). Keep it in step with the services' handler maps.
CONSUMERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        UserRegistered.event_type: (_EMAIL, _FEED, _NETWORK, _POST),
        UserVerificationRequested.event_type: (_EMAIL,),
        UserEmailVerified.event_type: (),
        UserPasswordResetRequested.event_type: (_EMAIL,),
        UserUpdated.event_type: (_FEED, _NETWORK, _POST),
        UserDeleted.event_type: (_EMAIL, _FEED, _NETWORK, _POST),
        UserFollowed.event_type: (_FEED,),
        UserUnfollowed.event_type: (_FEED,),
        PostCreated.event_type: (_FEED,),
        PostUpdated.event_type: (_FEED,),
        PostDeleted.event_type: (_FEED,),
        PostLiked.event_type: (_FEED,),
        PostUnliked.event_type: (_FEED,),
        CommentCreated.event_type: (_FEED,),
        CommentDeleted.event_type: (_FEED,),
    }
)


def consumers_of(event_type: str) -> tuple[str, ...]:
    """The services consuming ``event_type``; empty for types nobody consumes (or unknown)."""
    return CONSUMERS.get(event_type, ())


def _current_correlation_id() -> str | None:
    # Bound by the request middleware (or a consumer); carrying it into the event lets one id
    # follow a request through every consumer.
    return correlation_id.get()


def make_envelope(
    payload: EventPayload, *, producer: str, correlation_id: str | None = None
) -> EventEnvelope:
    """Wrap a payload with a fresh UUIDv7 id; the correlation id defaults to the bound one."""
    return EventEnvelope(
        id=new_id(),
        type=payload.event_type,
        version=payload.event_version,
        occurred_at=utcnow(),
        producer=producer,
        correlation_id=correlation_id if correlation_id is not None else _current_correlation_id(),
        data=payload.model_dump(mode="json"),
        trace=trace_headers() or None,
    )


def parse_payload(envelope: EventEnvelope) -> EventPayload:
    """The typed payload of an envelope; raises :class:`EventDecodeError` (a ValueError)."""
    cls = EVENT_TYPES.get(envelope.type)
    if cls is None:
        raise EventDecodeError(f"unknown event type {envelope.type!r}")
    try:
        return cls.model_validate(envelope.data)
    except ValidationError as exc:
        raise EventDecodeError(f"invalid {envelope.type} data: {_summary(exc)}") from exc


def _summary(exc: ValidationError) -> str:
    # Locations and messages only: event data may hold tokens or emails that must not leak
    # into dead-letter headers or logs.
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    )[:500]
