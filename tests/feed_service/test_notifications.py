"""Notifications: kinds, unread count, mark read, cap, and the SSE stream across replicas."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from common.events import CommentCreated, PostCreated, PostLiked, UserFollowed, make_envelope
from common.ids import new_id
from common.time import utcnow
from tests.feed_service.conftest import FeedHarness, commit_to_graph
from tests.support.jwt import User
from tests.support.polling import eventually


async def _deliver(h: FeedHarness, payload: Any) -> None:
    envelope = make_envelope(payload, producer="test")
    commit_to_graph(h.graph, envelope)
    await h.runtime.events.handlers().handle(envelope)


async def _notes(h: FeedHarness, user: User, **params: Any) -> dict[str, Any]:
    response = await h.client.get("/api/v1/me/notifications", params=params, headers=user.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_kinds_unread_count_mark_read_and_paging(harness_factory: Any) -> None:
    h: FeedHarness = await harness_factory(run_workers=False)
    alice, bob = await _registered(h, "alice"), await _registered(h, "bob")
    post_id, comment_id = new_id(), new_id()
    await _deliver(h, UserFollowed(follower_id=bob.id, followee_id=alice.id, followed_at=utcnow()))
    await _deliver(
        h,
        PostCreated(
            post_id=new_id(),
            author_id=bob.id,
            content=f"@{alice.username}",
            created_at=utcnow(),
            mention_ids=[alice.id],
        ),
    )
    await _deliver(h, PostLiked(post_id=post_id, post_author_id=alice.id, user_id=bob.id))
    await _deliver(
        h,
        CommentCreated(
            comment_id=comment_id, post_id=post_id, post_author_id=alice.id, author_id=bob.id
        ),
    )
    # Own actions notify nobody.
    await _deliver(h, PostLiked(post_id=post_id, post_author_id=alice.id, user_id=alice.id))

    body = await _notes(h, alice)
    assert [n["type"] for n in body["items"]] == ["comment", "like", "mention", "follow"]
    assert body["unread_count"] == 4
    comment = body["items"][0]
    assert comment["actor"] == {"id": bob.id, "username": bob.username, "display_name": "Bob"}
    assert (comment["post_id"], comment["comment_id"], comment["read"]) == (
        post_id,
        comment_id,
        False,
    )
    assert comment["created_at"].endswith("Z")

    mention_id = body["items"][2]["id"]
    response = await h.client.post(
        "/api/v1/me/notifications/read", json={"up_to_id": mention_id}, headers=alice.auth
    )
    assert response.status_code == 204
    body = await _notes(h, alice)
    assert body["unread_count"] == 2
    assert [n["read"] for n in body["items"]] == [False, False, True, True]

    first = await _notes(h, alice, limit=3)
    rest = await _notes(h, alice, limit=3, cursor=first["next_cursor"])
    assert [n["id"] for n in first["items"] + rest["items"]] == [n["id"] for n in body["items"]]
    assert rest["next_cursor"] is None

    response = await h.client.post("/api/v1/me/notifications/read", headers=alice.auth)
    assert response.status_code == 204
    assert (await _notes(h, alice))["unread_count"] == 0
    assert (await _notes(h, bob))["items"] == []


async def test_notifications_are_capped_per_user(harness_factory: Any) -> None:
    h: FeedHarness = await harness_factory(run_workers=False, notification_cap=3)
    alice, bob = await _registered(h, "alice"), await _registered(h, "bob")
    post_ids = [new_id() for _ in range(5)]
    for post_id in post_ids:
        await _deliver(h, PostLiked(post_id=post_id, post_author_id=alice.id, user_id=bob.id))
    body = await _notes(h, alice)
    assert [n["post_id"] for n in body["items"]] == list(reversed(post_ids))[:3]
    assert body["unread_count"] == 3


async def test_notification_errors(harness_factory: Any) -> None:
    h: FeedHarness = await harness_factory(run_workers=False)
    alice = await _registered(h, "alice")
    for body in ({"up_to_id": "nope"}, {"extra": 1}):
        response = await h.client.post(
            "/api/v1/me/notifications/read", json=body, headers=alice.auth
        )
        assert response.status_code == 422, body
        assert response.headers["content-type"].startswith("application/problem+json")
    response = await h.client.get(
        "/api/v1/me/notifications", params={"cursor": "e30"}, headers=alice.auth
    )
    assert response.status_code == 422
    for path in ("/api/v1/me/notifications", "/api/v1/me/notifications/stream"):
        assert (await h.client.get(path)).status_code == 401
    response = await h.client.get(
        "/api/v1/me/notifications/stream",
        headers={**alice.auth, "Last-Event-ID": "garbage"},
    )
    assert response.status_code == 422


async def _registered(h: FeedHarness, name: str) -> User:
    from common.events import UserRegistered

    user_id = new_id()
    username = f"{name}_{user_id[-6:]}"
    h.graph.known.add(user_id)
    await _deliver(
        h,
        UserRegistered(
            user_id=user_id, username=username, display_name=name.title(), email="x@y.org"
        ),
    )
    return User(user_id, username, h.tokens.mint(user_id, username))


class SSEReader:
    """Collects events (and heartbeat comments) from a live text/event-stream response."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.comments = 0

    async def consume(self, response: httpx.Response) -> None:
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line.startswith(":"):
                self.comments += 1
            elif not line:
                if "data" in fields:
                    await self.events.put(fields)
                fields = {}
            else:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")


@contextlib.asynccontextmanager
async def sse(url: str, user: User, last_event_id: str | None = None) -> AsyncIterator[SSEReader]:
    headers = dict(user.auth)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    reader = SSEReader()
    async with (
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30)) as client,
        client.stream("GET", "/api/v1/me/notifications/stream", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        task = asyncio.create_task(reader.consume(response))
        try:
            yield reader
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task


async def test_sse_delivers_a_like_live_and_resumes_after_reconnect(harness_factory: Any) -> None:
    # Replica A consumes events; replica B only serves HTTP: the stream must cross replicas.
    a: FeedHarness = await harness_factory(http=True, sse_heartbeat_s=0.2)
    b: FeedHarness = await harness_factory(http=True, run_workers=False, sse_heartbeat_s=0.2)
    assert a.url is not None and b.url is not None
    alice, bob = await a.user("alice"), await a.user("bob")
    post = await a.post(alice, "like me live")

    async with sse(b.url, alice) as reader:
        response = await a.post_client.put(f"/api/v1/posts/{post['id']}/like", headers=bob.auth)
        assert response.status_code == 204
        event = await asyncio.wait_for(reader.events.get(), timeout=10)
        like = json.loads(event["data"])
        assert (like["type"], like["actor"]["id"], like["post_id"]) == ("like", bob.id, post["id"])
        assert event["id"] == like["id"]
        await eventually(lambda: _at_least(reader.comments, 1), timeout=5)  # heartbeats

    # While disconnected: a comment. Reconnecting (to the other replica) resumes after the like.
    response = await a.post_client.post(
        f"/api/v1/posts/{post['id']}/comments", json={"content": "hi"}, headers=bob.auth
    )
    assert response.status_code == 201
    await eventually(lambda: _unread(a, alice, 2))
    async with sse(a.url, alice, last_event_id=like["id"]) as reader:
        event = await asyncio.wait_for(reader.events.get(), timeout=10)
        comment = json.loads(event["data"])
        assert comment["type"] == "comment"
        assert comment["comment_id"] == response.json()["id"]
        assert reader.events.empty()


async def _at_least(value: int, n: int) -> bool:
    return value >= n


async def _unread(h: FeedHarness, user: User, n: int) -> bool:
    return bool((await _notes(h, user))["unread_count"] == n)
