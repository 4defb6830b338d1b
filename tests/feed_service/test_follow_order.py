"""Follow and unfollow events of one pair handled out of order (a retry queue gives a failed
follow back after the unfollow that came next): the feed follows network_service's graph."""

from __future__ import annotations

import asyncio

from common.events import UserFollowed, UserUnfollowed
from common.time import utcnow
from tests.feed_service.conftest import FeedHarness
from tests.support.polling import eventually


async def _in_feed(h: FeedHarness, reader_id: str, post_id: str) -> bool:
    members = await h.redis.zrange(f"feed:{{u:{reader_id}}}", 0, -1)
    return any(m.startswith(f"{post_id}:") for m in members)


async def test_a_follow_handled_after_its_unfollow_does_not_come_back(h: FeedHarness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    # Both feeds built: fan-out writes into them.
    assert await h.feed_ids(alice) == await h.feed_ids(bob) == []
    before = await h.post(bob, "before the follow")
    await eventually(lambda: _in_feed(h, bob.id, before["id"]), timeout=20)

    # alice follows bob, then unfollows him; the follow's event is retried, so it comes last.
    followed = UserFollowed(follower_id=alice.id, followee_id=bob.id, followed_at=utcnow())
    h.graph.follows.setdefault(alice.id, set()).add(bob.id)
    h.graph.follows[alice.id].discard(bob.id)
    await h.publish(UserUnfollowed(follower_id=alice.id, followee_id=bob.id))
    await h.publish(followed)
    await asyncio.sleep(2)  # both handled (nothing to wait on: the right outcome is no change)

    after = await h.post(bob, "after the unfollow")
    await eventually(lambda: _in_feed(h, bob.id, after["id"]), timeout=20)
    ids = await h.feed_ids(alice)
    assert before["id"] not in ids
    assert after["id"] not in ids


async def test_an_unfollow_handled_after_a_new_follow_does_not_undo_it(h: FeedHarness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    assert await h.feed_ids(alice) == await h.feed_ids(bob) == []
    first = await h.post(bob, "first")
    await h.follow(alice, bob)
    await eventually(lambda: _in_feed(h, alice.id, first["id"]), timeout=20)

    # alice unfollows and follows again; the unfollow's event is retried, so it comes last.
    h.graph.follows[alice.id].discard(bob.id)
    h.graph.follows[alice.id].add(bob.id)
    await h.publish(UserFollowed(follower_id=alice.id, followee_id=bob.id, followed_at=utcnow()))
    await h.publish(UserUnfollowed(follower_id=alice.id, followee_id=bob.id))
    await asyncio.sleep(2)

    second = await h.post(bob, "second")
    await eventually(lambda: _in_feed(h, bob.id, second["id"]), timeout=20)
    await eventually(lambda: _in_feed(h, alice.id, second["id"]), timeout=20)
    ids = await h.feed_ids(alice)
    assert first["id"] in ids
    assert second["id"] in ids
