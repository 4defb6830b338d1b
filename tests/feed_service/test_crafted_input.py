"""Crafted input (malformed tokens, forged cursors and notification ids) is a 4xx, never a 500."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from common.events import PostLiked
from common.ids import new_id
from feed_service.repository import keys
from tests.feed_service.conftest import FeedHarness

# The notification tests' own helpers: events delivered straight to the handlers.
from tests.feed_service.test_notifications import _deliver, _notes, _registered
from tests.support.jwt import User

TOO_BIG_ID = "99999999999999999999-0"  # 20 digits, past a Redis stream id's 64 bits


def raw_cursor(json_text: str) -> str:
    return base64.urlsafe_b64encode(json_text.encode()).rstrip(b"=").decode()


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


def assert_invalid_cursor(response: httpx.Response) -> None:
    assert_problem(response, 422)
    assert response.json()["errors"] == [{"loc": ["query", "cursor"], "msg": "Invalid cursor"}]


async def _liked_by(h: FeedHarness, author: User, liker: User, count: int) -> None:
    for _ in range(count):
        await _deliver(h, PostLiked(post_id=new_id(), post_author_id=author.id, user_id=liker.id))


async def test_malformed_token_is_401(harness_factory: Any) -> None:
    h: FeedHarness = await harness_factory(run_workers=False)
    token = "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6MTIzfQ.e30.AAAA"
    for path in ("/api/v1/me/feed", "/api/v1/me/notifications"):
        response = await h.client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_forged_feed_and_notification_cursors_are_422(harness_factory: Any) -> None:
    h: FeedHarness = await harness_factory(run_workers=False)
    alice = await _registered(h, "alice")
    for forged in [
        '{"s": true, "m": "p:a"}',  # a bool passed the old isinstance(int) check
        '{"s": 1.5, "m": "p:a"}',
        '{"s": 99999999999999999999, "m": "p:a"}',
        '{"s": 1, "m": ""}',
        '{"s": 1, "m": 5}',
    ]:
        response = await h.client.get(
            "/api/v1/me/feed", params={"cursor": raw_cursor(forged)}, headers=alice.auth
        )
        assert_invalid_cursor(response)
    for forged_id in ["0-0", TOO_BIG_ID, "18446744073709551616-0", "1-18446744073709551616"]:
        response = await h.client.get(
            "/api/v1/me/notifications",
            params={"cursor": raw_cursor(f'{{"id": "{forged_id}"}}')},
            headers=alice.auth,
        )
        assert_invalid_cursor(response)


async def test_notification_cursor_at_the_edges_of_the_id_space(harness_factory: Any) -> None:
    h: FeedHarness = await harness_factory(run_workers=False)
    alice, bob = await _registered(h, "alice"), await _registered(h, "bob")
    await _liked_by(h, alice, bob, 2)
    for edge in ["0-1", "18446744073709551615-0"]:
        await _notes(h, alice, cursor=raw_cursor(f'{{"id": "{edge}"}}'))


@pytest.mark.parametrize("bad", [TOO_BIG_ID, "0-0", "1-0\n", "-1-0"])
async def test_mark_read_with_an_impossible_id_is_422_and_changes_nothing(
    harness_factory: Any, bad: str
) -> None:
    h: FeedHarness = await harness_factory(run_workers=False)
    alice, bob = await _registered(h, "alice"), await _registered(h, "bob")
    await _liked_by(h, alice, bob, 2)
    response = await h.client.post(
        "/api/v1/me/notifications/read", json={"up_to_id": bad}, headers=alice.auth
    )
    assert_problem(response, 422)
    assert response.json()["errors"][0]["loc"] == ["body", "up_to_id"]
    assert (await _notes(h, alice))["unread_count"] == 2


async def test_a_bad_stored_read_pointer_does_not_break_the_list(harness_factory: Any) -> None:
    h: FeedHarness = await harness_factory(run_workers=False)
    alice, bob = await _registered(h, "alice"), await _registered(h, "bob")
    await _liked_by(h, alice, bob, 2)
    # What an unchecked mark-read stored before: every later list was a 500.
    await h.redis.set(keys.notif_read(alice.id), TOO_BIG_ID)
    body = await _notes(h, alice)
    assert body["unread_count"] == 2
    assert [n["read"] for n in body["items"]] == [False, False]
    # And marking read works again (the bad pointer no longer wins the comparison).
    newest = body["items"][0]["id"]
    response = await h.client.post(
        "/api/v1/me/notifications/read", json={"up_to_id": newest}, headers=alice.auth
    )
    assert response.status_code == 204
    assert (await _notes(h, alice))["unread_count"] == 0


@pytest.mark.parametrize("last_event_id", [TOO_BIG_ID, "0-0", "18446744073709551616-1"])
async def test_sse_with_an_impossible_last_event_id_is_422_before_streaming(
    harness_factory: Any, last_event_id: str
) -> None:
    h: FeedHarness = await harness_factory(run_workers=False)
    alice = await _registered(h, "alice")
    response = await h.client.get(
        "/api/v1/me/notifications/stream",
        headers={**alice.auth, "Last-Event-ID": last_event_id},
    )
    assert_problem(response, 422)
    assert response.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]
