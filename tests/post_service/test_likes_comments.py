"""Likes (idempotent, counted) and comments (oldest first, deletable by two people)."""

from __future__ import annotations

from typing import Any

from tests.post_service.conftest import PostHarness
from tests.support.jwt import User


async def _get(post: PostHarness, post_id: str, viewer: User | None = None) -> dict[str, Any]:
    r = await post.client.get(f"/api/v1/posts/{post_id}", headers=viewer.auth if viewer else {})
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


async def test_like_is_idempotent_and_counted(post: PostHarness) -> None:
    alice = post.user("alice")
    bob = await post.registered("bob", "Bobby")
    p = await post.post(alice, "like me")
    for _ in range(3):
        r = await post.client.put(f"/api/v1/posts/{p['id']}/like", headers=bob.auth)
        assert r.status_code == 204
    got = await _get(post, p["id"], bob)
    assert (got["like_count"], got["liked_by_me"]) == (1, True)
    assert (await _get(post, p["id"], alice))["liked_by_me"] is False
    events = await post.outbox(p["id"])
    assert [e.type for e in events] == ["post.created", "post.liked"]
    assert events[1].data == {"post_id": p["id"], "post_author_id": alice.id, "user_id": bob.id}

    likes = (await post.client.get(f"/api/v1/posts/{p['id']}/likes")).json()
    assert likes == {
        "items": [{"id": bob.id, "username": "bob", "display_name": "Bobby"}],
        "next_cursor": None,
    }

    for _ in range(2):
        r = await post.client.delete(f"/api/v1/posts/{p['id']}/like", headers=bob.auth)
        assert r.status_code == 204
    got = await _get(post, p["id"], bob)
    assert (got["like_count"], got["liked_by_me"]) == (0, False)
    assert await post.outbox_types(p["id"]) == ["post.created", "post.liked", "post.unliked"]


async def test_like_errors(post: PostHarness) -> None:
    bob = post.user("bob")
    assert (await post.client.put("/api/v1/posts/nope/like", headers=bob.auth)).status_code == 404
    # Unliking is idempotent even for a post that does not exist.
    assert (
        await post.client.delete("/api/v1/posts/nope/like", headers=bob.auth)
    ).status_code == 204
    p = await post.post(bob, "x")
    assert (await post.client.put(f"/api/v1/posts/{p['id']}/like")).status_code == 401
    assert (await post.client.delete(f"/api/v1/posts/{p['id']}/like")).status_code == 401
    assert (await post.client.get("/api/v1/posts/nope/likes")).status_code == 404
    assert await post.outbox_types() == ["post.created"]


async def test_likes_list_is_paginated_most_recent_first(post: PostHarness) -> None:
    alice = post.user("alice")
    p = await post.post(alice, "popular")
    likers = [post.user(f"fan{i}") for i in range(5)]
    for fan in likers:
        await post.client.put(f"/api/v1/posts/{p['id']}/like", headers=fan.auth)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = (await post.client.get(f"/api/v1/posts/{p['id']}/likes", params=params)).json()
        seen += [u["id"] for u in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == [u.id for u in reversed(likers)]
    assert (await _get(post, p["id"]))["like_count"] == 5


async def test_comments_are_created_and_listed_oldest_first(post: PostHarness) -> None:
    alice = post.user("alice")
    bob = await post.registered("bob", "Bob")
    p = await post.post(alice, "discuss")
    created = []
    for i in range(5):
        r = await post.client.post(
            f"/api/v1/posts/{p['id']}/comments", json={"content": f"  c{i} "}, headers=bob.auth
        )
        assert r.status_code == 201, r.text
        created.append(r.json())
    assert created[0]["content"] == "c0"
    assert created[0]["post_id"] == p["id"]
    assert created[0]["author"] == {"id": bob.id, "username": "bob", "display_name": "Bob"}
    assert created[0]["created_at"].endswith("Z")

    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        r = await post.client.get(f"/api/v1/posts/{p['id']}/comments", params=params)
        assert r.status_code == 200
        seen += r.json()["items"]
        if r.json()["next_cursor"] is None:
            break
        params["cursor"] = r.json()["next_cursor"]
    assert seen == created
    assert (await _get(post, p["id"]))["comment_count"] == 5
    events = await post.outbox(p["id"])
    assert [e.type for e in events] == ["post.created"] + ["comment.created"] * 5
    assert events[1].data == {
        "comment_id": created[0]["id"],
        "post_id": p["id"],
        "post_author_id": alice.id,
        "author_id": bob.id,
    }


async def test_comment_errors(post: PostHarness) -> None:
    alice = post.user("alice")
    p = await post.post(alice, "x")
    url = f"/api/v1/posts/{p['id']}/comments"
    for body in (
        {"content": ""},
        {"content": "a" * 501},
        {"content": "\x00"},
        {},
        {"content": "ok", "author_id": "x"},
        {"content": "ok", "id": "x"},
    ):
        r = await post.client.post(url, json=body, headers=alice.auth)
        assert r.status_code == 422, body
    assert (await post.client.post(url, json={"content": "hi"})).status_code == 401
    r = await post.client.post(
        "/api/v1/posts/nope/comments", json={"content": "hi"}, headers=alice.auth
    )
    assert r.status_code == 404
    assert (await post.client.get("/api/v1/posts/nope/comments")).status_code == 404
    assert (await _get(post, p["id"]))["comment_count"] == 0
    assert await post.outbox_types() == ["post.created"]


async def test_comment_idempotency_key(post: PostHarness) -> None:
    alice = post.user("alice")
    p = await post.post(alice, "x")
    headers = {**alice.auth, "Idempotency-Key": "c-1"}
    url = f"/api/v1/posts/{p['id']}/comments"
    first = await post.client.post(url, json={"content": "once"}, headers=headers)
    again = await post.client.post(url, json={"content": "once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert (await _get(post, p["id"]))["comment_count"] == 1
    assert await post.outbox_types(p["id"]) == ["post.created", "comment.created"]


async def test_comment_deleted_by_its_author_or_the_posts_author(post: PostHarness) -> None:
    alice = post.user("alice")  # post author
    bob = post.user("bob")  # comment author
    p = await post.post(alice, "x")
    url = f"/api/v1/posts/{p['id']}/comments"
    c1 = (await post.client.post(url, json={"content": "1"}, headers=bob.auth)).json()
    c2 = (await post.client.post(url, json={"content": "2"}, headers=bob.auth)).json()

    assert (
        await post.client.delete(f"/api/v1/comments/{c1['id']}", headers=bob.auth)
    ).status_code == 204
    assert (
        await post.client.delete(f"/api/v1/comments/{c2['id']}", headers=alice.auth)
    ).status_code == 204
    assert (await post.client.get(url)).json()["items"] == []
    assert (await _get(post, p["id"]))["comment_count"] == 0
    events = await post.outbox(p["id"])
    assert [e.type for e in events][-2:] == ["comment.deleted", "comment.deleted"]
    assert events[-1].data["comment_id"] == c2["id"] and events[-1].data["author_id"] == bob.id
    r = await post.client.delete(f"/api/v1/comments/{c1['id']}", headers=bob.auth)
    assert r.status_code == 404


async def test_third_party_cannot_delete_a_comment(post: PostHarness) -> None:
    alice, bob, mallory = post.user("alice"), post.user("bob"), post.user("mallory")
    p = await post.post(alice, "x")
    c = (
        await post.client.post(
            f"/api/v1/posts/{p['id']}/comments", json={"content": "mine"}, headers=bob.auth
        )
    ).json()
    before = await post.outbox_types()
    r = await post.client.delete(f"/api/v1/comments/{c['id']}", headers=mallory.auth)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (await post.client.delete(f"/api/v1/comments/{c['id']}")).status_code == 401
    items = (await post.client.get(f"/api/v1/posts/{p['id']}/comments")).json()["items"]
    assert items == [c]
    assert (await _get(post, p["id"]))["comment_count"] == 1
    assert await post.outbox_types() == before
