"""Gaps of issue 12 closed, through the public API with the real post_service."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from common.events import PostUpdated, make_envelope
from common.ids import new_id
from common.time import utcnow
from tests.feed_service.conftest import FeedHarness, flush
from tests.support.jwt import User
from tests.support.polling import eventually


async def _notification_types(h: FeedHarness, user: User) -> list[str]:
    response = await h.client.get("/api/v1/me/notifications", headers=user.auth)
    assert response.status_code == 200, response.text
    return sorted(n["type"] for n in response.json()["items"])


async def _unread(h: FeedHarness, user: User) -> int:
    response = await h.client.get("/api/v1/me/notifications", headers=user.auth)
    return int(response.json()["unread_count"])


async def test_unlike_and_comment_deletion_take_back_their_notifications(h: FeedHarness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    post = await h.post(alice, "like and comment me")
    like_url = f"/api/v1/posts/{post['id']}/like"
    assert (await h.post_client.put(like_url, headers=bob.auth)).status_code == 204
    comment = await h.post_client.post(
        f"/api/v1/posts/{post['id']}/comments", json={"content": "nice"}, headers=bob.auth
    )
    assert comment.status_code == 201, comment.text

    async def both() -> bool:
        return await _notification_types(h, alice) == ["comment", "like"]

    await eventually(both, timeout=20)
    assert await _unread(h, alice) == 2

    assert (await h.post_client.delete(like_url, headers=bob.auth)).status_code == 204
    deleted = await h.post_client.delete(
        f"/api/v1/comments/{comment.json()['id']}", headers=bob.auth
    )
    assert deleted.status_code == 204

    async def none_left() -> bool:
        return await _notification_types(h, alice) == []

    await eventually(none_left, timeout=20)
    assert await _unread(h, alice) == 0

    # A new like notifies again, and only once.
    assert (await h.post_client.put(like_url, headers=bob.auth)).status_code == 204

    async def liked_again() -> bool:
        return await _notification_types(h, alice) == ["like"]

    await eventually(liked_again, timeout=20)


async def test_a_read_never_puts_back_content_older_than_a_handled_edit(
    harness_factory: Any,
) -> None:
    # No consumer: the edit below is handled by hand, before any copy of the post is cached,
    # as happens when the edit event wins the race with a read that asks post_service.
    h: FeedHarness = await harness_factory(run_workers=False)
    user_id = new_id()
    username = f"alice_{user_id[-6:]}"
    h.graph.known.add(user_id)
    alice = User(user_id, username, h.tokens.mint(user_id, username))
    post = await h.post(alice, "first words")
    newer = make_envelope(
        PostUpdated(
            post_id=post["id"],
            author_id=alice.id,
            content="second thoughts",
            edited_at=utcnow() + timedelta(seconds=30),
        ),
        producer="test",
    )
    await h.runtime.events.handlers().handle(newer)

    items = (await h.feed_page(alice))["items"]
    assert [(p["id"], p["content"]) for p in items] == [(post["id"], "second thoughts")]
    # And the cached copy keeps it.
    items = (await h.feed_page(alice))["items"]
    assert items[0]["content"] == "second thoughts"


async def test_a_big_author_below_the_unmark_level_is_fanned_out_again(
    harness_factory: Any,
) -> None:
    h: FeedHarness = await harness_factory(hybrid_threshold=3, hybrid_unmark_ratio=0.5)
    alice = await h.user("alice")
    fans = [await h.user(f"fan{n}") for n in range(4)]
    for fan in fans:
        await h.feed_page(fan)
        await h.follow(fan, alice)

    async def big() -> bool:
        return bool(await h.redis.sismember("bigauthors", alice.id))

    await eventually(big, timeout=20)  # 4 followers > 3
    during = await h.post(alice, "posted while big")
    keeper = fans[0]

    async def sees(post_id: str) -> bool:
        return post_id in await h.feed_ids(keeper)

    await eventually(lambda: sees(during["id"]), timeout=20)  # merged at read time
    for fan in fans[1:3]:
        await h.unfollow(fan, alice)

    async def followers(count: int) -> bool:
        return int(await h.redis.scard(f"followers:{{u:{alice.id}}}")) == count

    await eventually(lambda: followers(2), timeout=20)
    assert await big(), "2 followers is still above the unmark level (hysteresis)"

    await h.unfollow(fans[3], alice)
    await eventually(lambda: followers(1), timeout=20)

    async def unmarked() -> bool:
        return not await big()

    await eventually(unmarked, timeout=20)
    # The big period's post is in the feed itself now, and new posts are fanned out.
    members = await h.redis.zrange(f"feed:{{u:{keeper.id}}}", 0, -1)
    assert f"{during['id']}:{alice.id}" in members
    after = await h.post(alice, "posted after")
    await eventually(lambda: sees(after["id"]), timeout=20)
    assert (await h.feed_ids(keeper))[:2] == [after["id"], during["id"]]
    for fan in fans[1:]:
        assert during["id"] not in await h.feed_ids(fan)


async def _post_service_knows(h: FeedHarness, user: User) -> bool:
    response = await h.post_client.get(f"/api/v1/users/{user.id}/posts")
    return response.status_code == 200


async def test_a_rebuilt_feed_holds_the_posts_that_mention_its_reader(h: FeedHarness) -> None:
    alice, carol, dave = await h.user("alice"), await h.user("carol"), await h.user("dave")
    await eventually(lambda: _post_service_knows(h, carol), timeout=20)
    # carol has never read her feed (none is built): the mention cannot be fanned into it.
    mention = await h.post(alice, f"hello @{carol.username}")
    other = await h.post(dave, "not about carol")
    await eventually(lambda: _handled(h, mention["id"]), timeout=20)

    ids = await h.feed_ids(carol)  # built now, from the sources
    assert mention["id"] in ids
    assert other["id"] not in ids

    # And after Redis lost everything, the rebuilt feed has it again.
    await flush(h.target)
    assert mention["id"] in await h.feed_ids(carol)


async def _handled(h: FeedHarness, post_id: str) -> bool:
    return bool(await h.redis.exists(f"post:{{p:{post_id}}}"))


async def test_a_hybrid_feed_is_cut_at_the_cap_like_a_fanned_out_one(
    harness_factory: Any,
) -> None:
    # cap 3: full fan-out would keep the reader's newest 3 posts; with a big author merged in
    # at read time the pages must stop at the same 3, not run on through both indexes.
    h: FeedHarness = await harness_factory(feed_cap=3, hybrid_threshold=2)
    alice, bob = await h.user("alice"), await h.user("bob")
    fans = [await h.user(f"fan{n}") for n in range(3)]
    reader = fans[0]
    for fan in fans:
        await h.feed_page(fan)
        await h.follow(fan, alice)
    await h.follow(reader, bob)

    async def big() -> bool:
        return bool(await h.redis.sismember("bigauthors", alice.id))

    await eventually(big, timeout=20)  # 3 followers > 2
    posted = []
    for n in range(3):
        posted.append(await h.post(bob, f"bob {n}"))
        posted.append(await h.post(alice, f"alice {n}"))
    newest = [p["id"] for p in reversed(posted)][:3]

    async def sees_newest() -> bool:
        return (await h.feed_ids(reader))[:1] == newest[:1]

    await eventually(sees_newest, timeout=20)
    assert await h.feed_ids(reader, limit=20) == newest
    for limit in (1, 2, 3):
        pages = await h.all_pages(reader, limit)
        assert [i for page in pages for i in page] == newest, limit
