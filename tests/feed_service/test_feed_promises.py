"""Feed promises of api.md, through the public API, with real post_service and RabbitMQ."""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest

from tests.feed_service.conftest import FeedHarness
from tests.support.polling import eventually


async def test_read_your_own_writes_without_the_event(harness_factory: Any) -> None:
    # No consumer runs: only the read-time merge can put the new post in the author's feed.
    h: FeedHarness = await harness_factory(run_workers=False)
    alice = await _user_without_events(h, "alice")
    await h.feed_page(alice)  # feed built (empty)
    post = await h.post(alice, "hello, my own feed")
    assert await h.feed_ids(alice) == [post["id"]]
    item = (await h.feed_page(alice))["items"][0]
    assert item["content"] == "hello, my own feed"
    assert item["author"]["id"] == alice.id


async def _user_without_events(h: FeedHarness, name: str) -> Any:
    from common.ids import new_id
    from tests.support.jwt import User

    user_id = new_id()
    username = f"{name}_{user_id[-6:]}"
    h.graph.known.add(user_id)
    return User(user_id, username, h.tokens.mint(user_id, username))


async def test_read_your_own_writes_with_workers(h: FeedHarness) -> None:
    alice = await h.user("alice")
    for n in range(3):
        post = await h.post(alice, f"post {n}")
        assert (await h.feed_ids(alice))[0] == post["id"]


async def test_first_pages_ask_post_service_only_for_an_unseen_own_post(
    h: FeedHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await h.user("alice")
    await h.feed_page(alice)  # built
    posts = h.runtime.feeds.posts
    calls: list[Any] = []
    original = posts.recent

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return await original(*args, **kwargs)

    monkeypatch.setattr(posts, "recent", counting)
    for _ in range(3):
        await h.feed_page(alice)
    assert calls == []  # nothing written: the common path makes no call
    post = await h.post(alice, "mine")
    assert (await h.feed_ids(alice))[0] == post["id"]  # asked, unless the event came first
    calls.clear()
    for _ in range(3):
        assert (await h.feed_ids(alice))[0] == post["id"]
    assert calls == []  # seen now: no more calls


async def test_followed_post_visible_within_one_second(h: FeedHarness) -> None:
    """The post reaches the follower's feed by fan-out alone.

    The 1 s figure itself is a speed claim, measured by the benchmark (fan-out lag under the
    mixed workload, docs/benchmarks.md); here a loaded CI machine only gets a loose bound.
    """
    alice, bob = await h.user("alice"), await h.user("bob")
    await h.feed_page(bob)
    await h.follow(bob, alice)
    await eventually(lambda: h.redis.sismember(f"followers:{{u:{alice.id}}}", bob.id))
    started = time.monotonic()
    post = await h.post(alice, "for my followers")

    async def visible() -> bool:
        return post["id"] in await h.feed_ids(bob)

    await eventually(visible, timeout=10)
    lag = time.monotonic() - started
    print(f"post visible to the follower after {lag * 1000:.0f} ms")
    assert lag < 5.0


async def test_follow_merges_and_unfollow_removes(h: FeedHarness) -> None:
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    a1 = await h.post(alice, "a1")
    a2 = await h.post(alice, "a2")
    c1 = await h.post(carol, "c1")
    mine = await h.post(bob, "b1")
    assert await h.feed_ids(bob) == [mine["id"]]
    await h.follow(bob, alice)
    await h.follow(bob, carol)

    async def merged() -> bool:
        return await h.feed_ids(bob) == [mine["id"], c1["id"], a2["id"], a1["id"]]

    await eventually(merged)
    await h.unfollow(bob, alice)

    async def unmerged() -> bool:
        return await h.feed_ids(bob) == [mine["id"], c1["id"]]

    await eventually(unmerged)


async def test_deleted_post_leaves_every_feed_and_edit_shows_everywhere(h: FeedHarness) -> None:
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    for reader in (bob, carol):
        await h.feed_page(reader)
        await h.follow(reader, alice)
    await eventually(lambda: _followers(h, alice, 2))
    keep = await h.post(alice, "keep me")
    gone = await h.post(alice, "delete me")
    for reader in (alice, bob, carol):
        await eventually(functools.partial(_has, h, reader, gone["id"]))

    response = await h.post_client.patch(
        f"/api/v1/posts/{keep['id']}", json={"content": "edited!"}, headers=alice.auth
    )
    assert response.status_code == 200
    response = await h.post_client.delete(f"/api/v1/posts/{gone['id']}", headers=alice.auth)
    assert response.status_code == 204

    for reader in (alice, bob, carol):

        async def settled(r: Any = reader) -> bool:
            items = (await h.feed_page(r))["items"]
            return [(p["id"], p["content"], p["edited_at"] is not None) for p in items] == [
                (keep["id"], "edited!", True)
            ]

        await eventually(settled)
    # Gone from Redis too, not only hidden at read time.
    assert not await h.redis.zscore(f"feed:{{u:{bob.id}}}", f"{gone['id']}:{alice.id}")


async def test_deleted_account_posts_leave_every_feed(h: FeedHarness) -> None:
    from common.events import UserDeleted

    alice, bob = await h.user("alice"), await h.user("bob")
    await h.feed_page(bob)
    await h.follow(bob, alice)
    await h.follow(alice, bob)
    await eventually(lambda: _followers(h, alice, 1))
    await eventually(lambda: _followers(h, bob, 1))
    a1 = await h.post(alice, "soon gone")
    b1 = await h.post(bob, "bob stays")
    await eventually(lambda: _has(h, bob, a1["id"]))
    await eventually(lambda: _has(h, alice, b1["id"]))

    h.graph.follows.pop(alice.id, None)
    for ees in h.graph.follows.values():
        ees.discard(alice.id)
    await h.publish(UserDeleted(user_id=alice.id))

    async def gone() -> bool:
        return await h.feed_ids(bob) == [b1["id"]]

    await eventually(gone)  # at once: the account tombstone drops its entries on read

    async def dropped() -> bool:
        # The handler drops the account's keys after the tombstone, a moment later.
        keys = (f"feed:{{u:{alice.id}}}", f"feedmeta:{{u:{alice.id}}}", f"notif:{{u:{alice.id}}}")
        return not await h.redis.exists(*keys)

    await eventually(dropped)
    assert not await h.redis.sismember(f"followers:{{u:{bob.id}}}", alice.id)
    assert not await h.redis.zscore(f"feed:{{u:{bob.id}}}", f"{a1['id']}:{alice.id}")


async def test_mentions_land_in_the_mentioned_feed(h: FeedHarness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    await h.feed_page(bob)
    await eventually(lambda: _post_service_knows(h, bob))
    post = await h.post(alice, f"hi @{bob.username}")
    await eventually(lambda: _has(h, bob, post["id"]))
    item = (await h.feed_page(bob))["items"][0]
    assert [m["id"] for m in item["mentions"]] == [bob.id]


async def test_like_and_comment_counts_are_current(h: FeedHarness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    post = await h.post(alice, "like me")
    await eventually(lambda: _has(h, alice, post["id"]))
    response = await h.post_client.put(f"/api/v1/posts/{post['id']}/like", headers=bob.auth)
    assert response.status_code == 204
    response = await h.post_client.post(
        f"/api/v1/posts/{post['id']}/comments", json={"content": "nice"}, headers=bob.auth
    )
    assert response.status_code == 201

    async def counted() -> bool:
        item = (await h.feed_page(alice))["items"][0]
        return bool(item["like_count"] == 1 and item["comment_count"] == 1)

    await eventually(counted)
    await h.feed_page(bob)
    await h.follow(bob, alice)

    async def liked_by_bob() -> bool:
        items = (await h.feed_page(bob))["items"]
        return bool(items) and items[0]["id"] == post["id"] and items[0]["liked_by_me"]

    await eventually(liked_by_bob)


async def test_pages_are_stable_while_posts_arrive(h: FeedHarness) -> None:
    alice = await h.user("alice")
    posts = [await h.post(alice, f"p{n}") for n in range(7)]
    await eventually(lambda: _count(h, alice, 7))
    first = await h.feed_page(alice, limit=3)
    newer = await h.post(alice, "newer")
    await eventually(lambda: _count(h, alice, 8))
    seen = [p["id"] for p in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        body = await h.feed_page(alice, limit=3, cursor=cursor)
        seen += [p["id"] for p in body["items"]]
        cursor = body["next_cursor"]
    assert seen == [p["id"] for p in reversed(posts)]
    assert newer["id"] not in seen


async def test_feed_errors(h: FeedHarness) -> None:
    alice = await h.user("alice")
    response = await h.client.get("/api/v1/me/feed")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    for params in ({"limit": 0}, {"limit": 101}, {"cursor": "garbage!"}, {"cursor": "e30"}):
        response = await h.client.get("/api/v1/me/feed", params=params, headers=alice.auth)
        assert response.status_code == 422, params
        assert response.headers["content-type"].startswith("application/problem+json")


async def _followers(h: FeedHarness, user: Any, n: int) -> bool:
    return int(await h.redis.scard(f"followers:{{u:{user.id}}}")) == n


async def _has(h: FeedHarness, user: Any, post_id: str) -> bool:
    return post_id in await h.feed_ids(user)


async def _count(h: FeedHarness, user: Any, n: int) -> bool:
    return len(await h.feed_ids(user)) == n


async def _post_service_knows(h: FeedHarness, user: Any) -> bool:
    response = await h.post_client.get(f"/api/v1/users/{user.id}/posts")
    return response.status_code == 200


async def test_sources_down_give_503_with_retry_after(harness_factory: Any) -> None:
    from tests.support.server import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    h: FeedHarness = await harness_factory(
        run_workers=False, post_service_url=dead, network_service_url=dead
    )
    alice = await _user_without_events(h, "alice")
    response = await h.client.get("/api/v1/me/feed", headers=alice.auth)
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "127.0.0.1" not in response.text
