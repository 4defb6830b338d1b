"""Creating, reading, editing and deleting posts (api.md: Posts)."""

from __future__ import annotations

import pytest

from tests.post_service.conftest import PostHarness

PROBLEM = "application/problem+json"


async def test_create_post_returns_the_post_with_parsed_tags_and_mentions(
    post: PostHarness,
) -> None:
    alice = await post.registered("alice", "Alice A.")
    bob = await post.registered("bob", "Bob B.")
    body = await post.post(alice, "  Hello @Bob and @nobody_here! #Python #python #asyncio x#no  ")

    assert body["content"] == "Hello @Bob and @nobody_here! #Python #python #asyncio x#no"
    assert body["author"] == {"id": alice.id, "username": "alice", "display_name": "Alice A."}
    assert body["hashtags"] == ["python", "asyncio"]
    assert body["mentions"] == [{"id": bob.id, "username": "bob", "display_name": "Bob B."}]
    assert body["edited_at"] is None
    assert body["reply_to_id"] is None
    assert (body["like_count"], body["comment_count"], body["liked_by_me"]) == (0, 0, False)
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 24

    events = await post.outbox(body["id"])
    assert [e.type for e in events] == ["post.created"]
    data = events[0].data
    assert data["post_id"] == body["id"] and data["author_id"] == alice.id
    assert data["hashtags"] == ["python", "asyncio"]
    assert data["mention_ids"] == [bob.id]
    assert data["author_username"] == "alice" and data["author_display_name"] == "Alice A."


async def test_author_without_replica_row_posts_from_token_claims(post: PostHarness) -> None:
    # user.registered has not arrived yet: posting must not fail because of event lag.
    carol = post.user("carol")
    body = await post.post(carol, "first!")
    assert body["author"] == {"id": carol.id, "username": "carol", "display_name": "carol"}

    # The late event fills in the display name.
    from common.events import UserRegistered

    await post.deliver(
        UserRegistered(user_id=carol.id, username="carol", display_name="Carol C", email="c@x.io")
    )
    got = (await post.client.get(f"/api/v1/posts/{body['id']}")).json()
    assert got["author"]["display_name"] == "Carol C"


async def test_reply_to_existing_post_and_unknown_reply_is_404(post: PostHarness) -> None:
    alice = post.user("alice")
    parent = await post.post(alice, "parent")
    reply = await post.post(alice, "child", reply_to_id=parent["id"])
    assert reply["reply_to_id"] == parent["id"]

    r = await post.client.post(
        "/api/v1/posts", json={"content": "x", "reply_to_id": "nope"}, headers=alice.auth
    )
    assert r.status_code == 404
    assert r.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    "content",
    ["", "   \n\t ", "x" * 501, "nul\x00byte", "bell\x07", "esc\x1b[31m", "c1\x85"],
    ids=["empty", "blank", "too-long", "nul", "bell", "escape", "c1-control"],
)
async def test_invalid_content_is_422(post: PostHarness, content: str) -> None:
    alice = post.user("alice")
    r = await post.client.post("/api/v1/posts", json={"content": content}, headers=alice.auth)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith(PROBLEM)
    assert await post.outbox_types() == []


async def test_content_limits_count_characters_after_trimming(post: PostHarness) -> None:
    alice = post.user("alice")
    body = await post.post(alice, "  " + "é" * 500 + "\n")
    assert body["content"] == "é" * 500
    body = await post.post(alice, "line one\nline two\ttab")
    assert body["content"] == "line one\nline two\ttab"


@pytest.mark.parametrize(
    "field,value",
    [
        ("id", "0190-fake"),
        ("author_id", "someone-else"),
        ("like_count", 1000),
        ("comment_count", 5),
        ("created_at", "2020-01-01T00:00:00.000Z"),
        ("hashtags", ["x"]),
    ],
)
async def test_server_owned_fields_are_422(post: PostHarness, field: str, value: object) -> None:
    alice = post.user("alice")
    r = await post.client.post(
        "/api/v1/posts", json={"content": "hi", field: value}, headers=alice.auth
    )
    assert r.status_code == 422
    created = await post.post(alice, "original")
    r = await post.client.patch(
        f"/api/v1/posts/{created['id']}", json={"content": "new", field: value}, headers=alice.auth
    )
    assert r.status_code == 422
    got = (await post.client.get(f"/api/v1/posts/{created['id']}")).json()
    assert got["content"] == "original"


async def test_creating_requires_a_valid_token(post: PostHarness) -> None:
    r = await post.client.post("/api/v1/posts", json={"content": "hi"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await post.client.post(
        "/api/v1/posts", json={"content": "hi"}, headers={"Authorization": "Bearer garbage"}
    )
    assert r.status_code == 401
    expired = post.tokens.mint("u1", "alice", expired=True)
    r = await post.client.post(
        "/api/v1/posts", json={"content": "hi"}, headers={"Authorization": f"Bearer {expired}"}
    )
    assert r.status_code == 401
    assert await post.outbox_types() == []


async def test_get_post_and_unknown_is_404(post: PostHarness) -> None:
    alice = post.user("alice")
    created = await post.post(alice, "hello")
    r = await post.client.get(f"/api/v1/posts/{created['id']}")
    assert r.status_code == 200
    assert r.json() == created
    r = await post.client.get("/api/v1/posts/does-not-exist")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith(PROBLEM)


async def test_author_edits_post(post: PostHarness) -> None:
    alice = await post.registered("alice")
    bob = await post.registered("bob")
    created = await post.post(alice, "old #one")
    r = await post.client.patch(
        f"/api/v1/posts/{created['id']}",
        json={"content": " new #Two for @bob "},
        headers=alice.auth,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == "new #Two for @bob"
    assert body["edited_at"] is not None and body["edited_at"] >= body["created_at"]
    assert body["hashtags"] == ["two"]
    assert [m["id"] for m in body["mentions"]] == [bob.id]
    assert body["created_at"] == created["created_at"]

    events = await post.outbox(created["id"])
    assert [e.type for e in events] == ["post.created", "post.updated"]
    assert events[1].data["content"] == "new #Two for @bob"
    tagged = (await post.client.get("/api/v1/posts", params={"tag": "one"})).json()
    assert tagged["items"] == []


async def test_edit_validates_and_404s(post: PostHarness) -> None:
    alice = post.user("alice")
    created = await post.post(alice, "keep")
    r = await post.client.patch(
        f"/api/v1/posts/{created['id']}", json={"content": "  "}, headers=alice.auth
    )
    assert r.status_code == 422
    r = await post.client.patch("/api/v1/posts/nope", json={"content": "x"}, headers=alice.auth)
    assert r.status_code == 404
    r = await post.client.patch(f"/api/v1/posts/{created['id']}", json={"content": "x"})
    assert r.status_code == 401
    assert await post.outbox_types(created["id"]) == ["post.created"]


async def test_other_user_cannot_edit_or_delete(post: PostHarness) -> None:
    alice = post.user("alice")
    mallory = post.user("mallory")
    created = await post.post(alice, "mine")

    r = await post.client.patch(
        f"/api/v1/posts/{created['id']}", json={"content": "hacked"}, headers=mallory.auth
    )
    assert r.status_code == 403
    assert r.headers["content-type"].startswith(PROBLEM)
    r = await post.client.delete(f"/api/v1/posts/{created['id']}", headers=mallory.auth)
    assert r.status_code == 403

    got = (await post.client.get(f"/api/v1/posts/{created['id']}")).json()
    assert got == created
    assert await post.outbox_types() == ["post.created"]


async def test_author_deletes_post(post: PostHarness) -> None:
    alice = post.user("alice")
    bob = post.user("bob")
    created = await post.post(alice, "bye #gone")
    await post.client.put(f"/api/v1/posts/{created['id']}/like", headers=bob.auth)
    await post.client.post(
        f"/api/v1/posts/{created['id']}/comments", json={"content": "c"}, headers=bob.auth
    )

    r = await post.client.delete(f"/api/v1/posts/{created['id']}", headers=alice.auth)
    assert r.status_code == 204
    assert (await post.client.get(f"/api/v1/posts/{created['id']}")).status_code == 404
    assert (
        await post.client.delete(f"/api/v1/posts/{created['id']}", headers=alice.auth)
    ).status_code == 404
    events = await post.outbox(created["id"])
    assert events[-1].type == "post.deleted"
    assert events[-1].data == {"post_id": created["id"], "author_id": alice.id}
    assert await post.scalar("select count(*) from likes") == 0
    assert await post.scalar("select count(*) from comments") == 0
    assert await post.scalar("select count(*) from post_hashtags") == 0


async def test_idempotency_key_returns_the_same_post(post: PostHarness) -> None:
    alice = post.user("alice")
    bob = post.user("bob")
    headers = {**alice.auth, "Idempotency-Key": "k-1"}
    first = await post.client.post("/api/v1/posts", json={"content": "once"}, headers=headers)
    second = await post.client.post("/api/v1/posts", json={"content": "once"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert await post.outbox_types() == ["post.created"]

    other_key = await post.client.post(
        "/api/v1/posts", json={"content": "once"}, headers={**alice.auth, "Idempotency-Key": "k-2"}
    )
    other_user = await post.client.post(
        "/api/v1/posts", json={"content": "once"}, headers={**bob.auth, "Idempotency-Key": "k-1"}
    )
    assert len({first.json()["id"], other_key.json()["id"], other_user.json()["id"]}) == 3

    reused = await post.client.post("/api/v1/posts", json={"content": "different"}, headers=headers)
    assert reused.status_code == 422
    assert await post.scalar("select count(*) from posts") == 3


async def test_concurrent_retries_with_one_key_create_one_post(post: PostHarness) -> None:
    import asyncio

    alice = post.user("alice")
    await post.post(alice, "warm up the replica row")
    headers = {**alice.auth, "Idempotency-Key": "race"}
    responses = await asyncio.gather(
        *(
            post.client.post("/api/v1/posts", json={"content": "r"}, headers=headers)
            for _ in range(5)
        )
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await post.scalar("select count(*) from posts where content = 'r'") == 1


async def test_expired_idempotency_key_creates_a_new_post(post: PostHarness) -> None:
    alice = post.user("alice")
    headers = {**alice.auth, "Idempotency-Key": "old"}
    first = await post.client.post("/api/v1/posts", json={"content": "a"}, headers=headers)
    async with post.app.state.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text("update idempotency_keys set created_at = now() - interval '25 hours'")
        )
    second = await post.client.post("/api/v1/posts", json={"content": "a"}, headers=headers)
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    assert await post.scalar("select count(*) from idempotency_keys") == 1


async def test_oversized_body_is_413(post: PostHarness) -> None:
    alice = post.user("alice")
    r = await post.client.post(
        "/api/v1/posts", json={"content": "x" * (1024 * 1024 + 10)}, headers=alice.auth
    )
    assert r.status_code == 413
    assert await post.outbox_types() == []
