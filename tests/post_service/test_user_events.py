"""The author replica (user.registered / user.updated) and account deletion (user.deleted)."""

from __future__ import annotations

from datetime import timedelta

from common.events import UserDeleted, UserRegistered, UserUpdated, make_envelope
from tests.post_service.conftest import PostHarness


async def test_registered_and_updated_keep_the_replica(post: PostHarness) -> None:
    alice = await post.registered("alice", "Alice")
    p = await post.post(alice, "hi")
    assert p["author"]["display_name"] == "Alice"

    await post.deliver(UserUpdated(user_id=alice.id, username="alice2", display_name="Alice II"))
    got = (await post.client.get(f"/api/v1/posts/{p['id']}")).json()
    assert got["author"] == {"id": alice.id, "username": "alice2", "display_name": "Alice II"}

    # An older event arriving late does not roll the name back.
    fresh = make_envelope(
        UserUpdated(user_id=alice.id, username="alice", display_name="Old"), producer="auth"
    )
    stale = fresh.model_copy(update={"occurred_at": fresh.occurred_at - timedelta(hours=1)})
    await post.deliver(stale)
    got = (await post.client.get(f"/api/v1/posts/{p['id']}")).json()
    assert got["author"]["display_name"] == "Alice II"


async def test_mentions_resolve_against_the_replica(post: PostHarness) -> None:
    alice = post.user("alice")
    bob = await post.registered("Bob_B", "Bob")
    p = await post.post(alice, "hey @bob_b and @ghost")
    assert [m["id"] for m in p["mentions"]] == [bob.id]
    events = await post.outbox(p["id"])
    assert events[0].data["mention_ids"] == [bob.id]


async def test_duplicate_event_is_applied_once(post: PostHarness) -> None:
    alice = await post.registered("alice")
    bob = post.user("bob")
    p = await post.post(bob, "x")
    await post.client.put(f"/api/v1/posts/{p['id']}/like", headers=alice.auth)
    envelope = make_envelope(UserDeleted(user_id=alice.id), producer="auth")
    await post.deliver(envelope)
    await post.deliver(envelope)
    assert (await post.outbox_types(p["id"])).count("post.unliked") == 1
    assert (
        await post.scalar(
            "select count(*) from processed_events where event_id = :id", id=envelope.id
        )
        == 1
    )


async def test_deleting_an_account_removes_its_posts_likes_and_comments(
    post: PostHarness,
) -> None:
    alice = await post.registered("alice")
    bob = await post.registered("bob")
    # Alice's own content, with Bob's reactions on it.
    a1 = await post.post(alice, "alice one #tag")
    a2 = await post.post(alice, "alice two")
    await post.client.put(f"/api/v1/posts/{a1['id']}/like", headers=bob.auth)
    await post.client.post(
        f"/api/v1/posts/{a1['id']}/comments", json={"content": "bob on alice"}, headers=bob.auth
    )
    # Alice's reactions on Bob's post, and a mention of her.
    b1 = await post.post(bob, "bob's post for @alice")
    await post.client.put(f"/api/v1/posts/{b1['id']}/like", headers=alice.auth)
    ac = (
        await post.client.post(
            f"/api/v1/posts/{b1['id']}/comments", json={"content": "alice"}, headers=alice.auth
        )
    ).json()
    await post.client.post(
        f"/api/v1/posts/{b1['id']}/comments", json={"content": "bob"}, headers=bob.auth
    )
    seq_before = await post.scalar("select max(seq) from outbox")

    await post.deliver(UserDeleted(user_id=alice.id))

    for p in (a1, a2):
        assert (await post.client.get(f"/api/v1/posts/{p['id']}")).status_code == 404
    assert (await post.client.get(f"/api/v1/users/{alice.id}/posts")).status_code == 404
    assert (await post.client.get("/api/v1/posts", params={"tag": "tag"})).json()["items"] == []
    b1_now = (await post.client.get(f"/api/v1/posts/{b1['id']}")).json()
    assert (b1_now["like_count"], b1_now["comment_count"], b1_now["mentions"]) == (0, 1, [])
    assert (await post.client.get(f"/api/v1/posts/{b1['id']}/likes")).json()["items"] == []
    comments = (await post.client.get(f"/api/v1/posts/{b1['id']}/comments")).json()["items"]
    assert [c["content"] for c in comments] == ["bob"]
    for table in ("posts", "likes", "comments"):
        column = "author_id" if table != "likes" else "user_id"
        assert (
            await post.scalar(f"select count(*) from {table} where {column} = :u", u=alice.id) == 0
        )
    assert await post.scalar("select count(*) from likes") == 0
    assert await post.scalar("select count(*) from comments where post_id = :p", p=a1["id"]) == 0

    assert await post.scalar("select count(*) from outbox where seq > :s", s=seq_before) == 4
    emitted = {
        (e.type, e.data.get("post_id"))
        for e in await post.outbox()
        if e.type in {"post.deleted", "post.unliked", "comment.deleted"}
    }
    assert emitted == {
        ("post.deleted", a1["id"]),
        ("post.deleted", a2["id"]),
        ("post.unliked", b1["id"]),
        ("comment.deleted", b1["id"]),
    }
    deleted_comment = next(e for e in await post.outbox() if e.type == "comment.deleted")
    assert deleted_comment.data["comment_id"] == ac["id"]

    # The account cannot come back through a late event, nor post with a still-valid token.
    await post.deliver(
        UserRegistered(user_id=alice.id, username="alice", display_name="A", email="a@x.io")
    )
    r = await post.client.post("/api/v1/posts", json={"content": "ghost"}, headers=alice.auth)
    assert r.status_code == 401
    assert (await post.client.get(f"/api/v1/users/{alice.id}/posts")).status_code == 404
