"""Event envelope, payload models, ids and time helpers (pure logic)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import structlog

from common.events import (
    CONSUMERS,
    EVENT_TYPES,
    EventDecodeError,
    EventEnvelope,
    PostCreated,
    UserVerificationRequested,
    make_envelope,
    parse_payload,
)
from common.ids import new_id
from common.logging import bind_correlation_id
from common.time import format_timestamp, from_ms, to_ms, utcnow

NOW = datetime(2026, 11, 22, 0, 13, 42, 123000, tzinfo=UTC)

# One valid payload per event type: adding a type to the registry without adding it here fails.
SAMPLES: dict[str, dict[str, Any]] = {
    "user.registered": {
        "user_id": "u1",
        "username": "ann",
        "display_name": "Ann",
        "email": "a@x.io",
    },
    "user.verification_requested": {
        "user_id": "u1",
        "username": "ann",
        "sealed": "gAAAA-sealed-t0k",
    },
    "user.email_verified": {"user_id": "u1"},
    "user.password_reset_requested": {
        "user_id": "u1",
        "username": "ann",
        "sealed": "gAAAA-sealed-t0k",
    },
    "user.updated": {"user_id": "u1", "username": "ann", "display_name": "Ann B"},
    "user.deleted": {"user_id": "u1"},
    "user.followed": {"follower_id": "u1", "followee_id": "u2", "followed_at": NOW},
    "user.unfollowed": {"follower_id": "u1", "followee_id": "u2"},
    "post.created": {
        "post_id": "p1",
        "author_id": "u1",
        "content": "hi #x @bob",
        "created_at": NOW,
        "reply_to_id": None,
        "hashtags": ["x"],
        "mention_ids": ["u2"],
    },
    "post.updated": {"post_id": "p1", "author_id": "u1", "content": "edited", "edited_at": NOW},
    "post.deleted": {"post_id": "p1", "author_id": "u1"},
    "post.liked": {"post_id": "p1", "post_author_id": "u1", "user_id": "u2"},
    "post.unliked": {"post_id": "p1", "post_author_id": "u1", "user_id": "u2"},
    "comment.created": {
        "comment_id": "c1",
        "post_id": "p1",
        "post_author_id": "u1",
        "author_id": "u2",
    },
    "comment.deleted": {
        "comment_id": "c1",
        "post_id": "p1",
        "post_author_id": "u1",
        "author_id": "u2",
    },
}


def test_registry_covers_every_architecture_event_type() -> None:
    assert set(EVENT_TYPES) == set(SAMPLES)


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_every_payload_round_trips_through_the_wire_format(event_type: str) -> None:
    payload = EVENT_TYPES[event_type].model_validate(SAMPLES[event_type])
    envelope = make_envelope(payload, producer="test", correlation_id="corr-1")

    wire = envelope.to_json_bytes()
    decoded = EventEnvelope.from_json_bytes(wire)

    assert decoded == envelope
    assert decoded.type == event_type
    assert decoded.version == type(payload).event_version
    assert parse_payload(decoded) == payload
    assert set(json.loads(wire)) == {
        "id",
        "type",
        "version",
        "occurred_at",
        "producer",
        "correlation_id",
        "data",
    }


def test_envelope_id_is_uuid7_and_timestamps_are_utc_millis_with_z() -> None:
    payload = PostCreated.model_validate(SAMPLES["post.created"])
    envelope = make_envelope(payload, producer="post")
    body = json.loads(envelope.to_json_bytes())

    assert uuid.UUID(envelope.id).version == 7
    assert body["data"]["created_at"] == "2026-11-22T00:13:42.123Z"
    assert body["occurred_at"].endswith("Z") and len(body["occurred_at"]) == 24
    assert payload.aggregate_id() == "p1"


def test_ids_are_unique_and_time_ordered() -> None:
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert ids == sorted(ids)


def test_correlation_id_defaults_to_the_bound_one() -> None:
    structlog.contextvars.clear_contextvars()
    cid = bind_correlation_id("req-42")
    payload = EVENT_TYPES["user.deleted"].model_validate({"user_id": "u1"})
    assert make_envelope(payload, producer="auth").correlation_id == cid
    assert make_envelope(payload, producer="auth", correlation_id="x").correlation_id == "x"


def test_payloads_ignore_unknown_fields_for_forward_compatibility() -> None:
    data = {**SAMPLES["user.deleted"], "added_in_v2": True}
    envelope = EventEnvelope(
        id=new_id(), type="user.deleted", occurred_at=NOW, producer="auth", data=data
    )
    assert parse_payload(envelope).model_dump() == {"user_id": "u1"}


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{}", b'{"id": "x", "type": "user.deleted"}', b"[1, 2]"],
)
def test_malformed_bodies_raise_event_decode_error(body: bytes) -> None:
    with pytest.raises(EventDecodeError):
        EventEnvelope.from_json_bytes(body)


def test_unknown_type_and_invalid_data_raise_value_errors_without_leaking_values() -> None:
    unknown = EventEnvelope(id=new_id(), type="nope", occurred_at=NOW, producer="x", data={})
    with pytest.raises(EventDecodeError, match="unknown event type"):
        parse_payload(unknown)

    secret = "super-secret-token-value"
    bad = EventEnvelope(
        id=new_id(),
        type="user.verification_requested",
        occurred_at=NOW,
        producer="auth",
        data={"user_id": "u1", "username": secret, "sealed": ["not", "a", secret]},
    )
    with pytest.raises(ValueError, match=r"invalid user\.verification_requested") as info:
        parse_payload(bad)
    assert secret not in str(info.value)


def test_token_is_hidden_from_repr() -> None:
    payload = UserVerificationRequested.model_validate(SAMPLES["user.verification_requested"])
    assert "t0k" not in repr(payload)


def test_time_helpers() -> None:
    now = utcnow()
    assert now.tzinfo is UTC and now.microsecond % 1000 == 0
    assert from_ms(to_ms(now)) == now
    assert to_ms(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == 1000
    assert to_ms(datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)) == -500
    # Exactly representable as a float score (Redis sorted sets).
    assert float(to_ms(now)) == to_ms(now)
    plus_two = datetime(2026, 11, 22, 2, 13, 42, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(plus_two) == "2026-11-22T00:13:42.123Z"


def test_every_event_type_has_a_consumers_entry_matching_the_architecture() -> None:
    assert set(CONSUMERS) == set(EVENT_TYPES)
    for consumers in CONSUMERS.values():
        assert set(consumers) <= {"email", "feed", "network", "post"}
    # Token-carrying events go to email_service only; user.email_verified to nobody.
    assert CONSUMERS["user.verification_requested"] == ("email",)
    assert CONSUMERS["user.password_reset_requested"] == ("email",)
    assert CONSUMERS["user.email_verified"] == ()
    assert set(CONSUMERS["user.deleted"]) == {"email", "feed", "network", "post"}
