"""Writes racing an account deletion: each one is refused or removed with the account.

Several writers keep posting, commenting and liking through the HTTP API while user.deleted
is consumed; afterwards nothing of the user's is left and every later write gets 401.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from sqlalchemy import text

from common.events import UserDeleted
from tests.post_service.conftest import PostHarness
from tests.support.jwt import User

ROUNDS = 5


async def _write_until_refused(
    post: PostHarness, user: User, target: str, kind: str, outcomes: Counter[int]
) -> None:
    """Writes of one kind until refused; a 201 or 204 counts as written."""
    n = 0
    while True:
        n += 1
        if kind == "post":
            r = await post.client.post(
                "/api/v1/posts", json={"content": f"racing #{n}"}, headers=user.auth
            )
        elif kind == "comment":
            r = await post.client.post(
                f"/api/v1/posts/{target}/comments", json={"content": f"c{n}"}, headers=user.auth
            )
        else:
            method = post.client.put if n % 2 else post.client.delete
            r = await method(f"/api/v1/posts/{target}/like", headers=user.auth)
        outcomes[r.status_code] += 1
        if r.status_code == 401:
            assert r.headers["content-type"].startswith("application/problem+json")
            return
        assert r.status_code in (201, 204), r.text


async def _race_once(post: PostHarness, bystander_post: str, round_: int) -> None:
    victim = await post.registered(f"victim{round_}")
    await post.post(victim, "before the race")
    outcomes: Counter[int] = Counter()
    writers = [
        asyncio.create_task(_write_until_refused(post, victim, bystander_post, kind, outcomes))
        for kind in ("post", "post", "post", "comment", "like")
    ]
    try:
        while outcomes[201] + outcomes[204] < 30:  # the writers are well under way
            await asyncio.sleep(0.005)
        await post.deliver(UserDeleted(user_id=victim.id))
        await asyncio.wait_for(asyncio.gather(*writers), timeout=30)
    finally:
        for task in writers:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    left = {
        table: await post.scalar(f"select count(*) from {table} where {column} = :u", u=victim.id)
        for table, column in (
            ("posts", "author_id"),
            ("comments", "author_id"),
            ("likes", "user_id"),
        )
    }
    assert left == {"posts": 0, "comments": 0, "likes": 0}, (round_, left, dict(outcomes))
    # The counters on the bystander's post were uncounted exactly.
    likes, comments = (
        await post.scalar("select like_count from posts where id = :p", p=bystander_post),
        await post.scalar("select comment_count from posts where id = :p", p=bystander_post),
    )
    assert (likes, comments) == (
        await post.scalar("select count(*) from likes where post_id = :p", p=bystander_post),
        await post.scalar("select count(*) from comments where post_id = :p", p=bystander_post),
    )
    r = await post.client.get("/api/v1/posts", params={"q": "racing"})
    assert all(p["author"]["id"] != victim.id for p in r.json()["items"])
    assert (await post.client.get(f"/api/v1/users/{victim.id}/posts")).status_code == 404


async def test_writes_racing_a_deletion_are_refused_or_removed(post: PostHarness) -> None:
    bystander = await post.registered("bystander")
    target = (await post.post(bystander, "a post to like and comment on"))["id"]
    for round_ in range(ROUNDS):
        await _race_once(post, target, round_)


async def test_every_write_path_refuses_a_tombstoned_author(post: PostHarness) -> None:
    """Edit, delete, unlike and comment deletion check the tombstone too, not only the id."""
    alice = await post.registered("alice")
    bob = await post.registered("bob")
    own = (await post.post(alice, "alice's"))["id"]
    bobs = await post.post(bob, "bob's")
    assert (
        await post.client.put(f"/api/v1/posts/{bobs['id']}/like", headers=alice.auth)
    ).status_code == 204
    comment = (
        await post.client.post(
            f"/api/v1/posts/{bobs['id']}/comments", json={"content": "hi"}, headers=alice.auth
        )
    ).json()
    # The tombstone alone, as if content removal were still to come, and no deny-list: only
    # the write paths' own check can refuse.
    async with post.app.state.engine.begin() as conn:
        await conn.execute(
            text("update authors set deleted_at = now() where id = :u"), {"u": alice.id}
        )
    post.app.state.deleted_users = None
    attempts = [
        post.client.post("/api/v1/posts", json={"content": "x"}, headers=alice.auth),
        post.client.patch(f"/api/v1/posts/{own}", json={"content": "x"}, headers=alice.auth),
        post.client.delete(f"/api/v1/posts/{own}", headers=alice.auth),
        post.client.put(f"/api/v1/posts/{bobs['id']}/like", headers=alice.auth),
        post.client.delete(f"/api/v1/posts/{bobs['id']}/like", headers=alice.auth),
        post.client.post(
            f"/api/v1/posts/{bobs['id']}/comments", json={"content": "x"}, headers=alice.auth
        ),
        post.client.delete(f"/api/v1/comments/{comment['id']}", headers=alice.auth),
    ]
    for attempt in attempts:
        r = await attempt
        assert r.status_code == 401, (r.request.method, r.request.url.path, r.text)
        assert r.json()["detail"] == "This account has been deleted"
