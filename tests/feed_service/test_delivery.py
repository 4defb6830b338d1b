"""Delivery guarantees: duplicates, reordering, Redis loss, idle feeds, hybrid equivalence."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from common.events import (
    CommentCreated,
    CommentDeleted,
    EventEnvelope,
    EventPayload,
    PostCreated,
    PostDeleted,
    PostLiked,
    PostUnliked,
    PostUpdated,
    UserDeleted,
    UserFollowed,
    UserRegistered,
    UserUnfollowed,
    UserUpdated,
    make_envelope,
)
from common.ids import new_id
from common.time import format_timestamp, utcnow
from tests.feed_service.conftest import FeedHarness, commit_to_graph, flush
from tests.support.jwt import User
from tests.support.polling import eventually


def _env(payload: EventPayload) -> EventEnvelope:
    return make_envelope(payload, producer="test")


async def _deliver(h: FeedHarness, envelope: EventEnvelope, times: int = 1) -> None:
    commit_to_graph(h.graph, envelope)
    handlers = h.runtime.events.handlers()
    if times == 1:
        await handlers.handle(envelope)
    else:
        # Concurrent duplicates are the hard case (two consumers got the same message).
        await asyncio.gather(*(handlers.handle(envelope) for _ in range(times)))


def _people(names: Sequence[str]) -> list[tuple[str, str]]:
    return [(new_id(), f"{n}_{new_id()[-6:]}") for n in names]


async def _bob_follows_alice(h: FeedHarness) -> tuple[str, User]:
    """alice's id and bob, both registered, bob's feed materialised and bob following alice."""
    (a, an), (b, bn) = _people(["alice", "bob"])
    h.graph.known |= {a, b}
    bob = User(b, bn, h.tokens.mint(b, bn))
    for uid, name in ((a, an), (b, bn)):
        registered = UserRegistered(user_id=uid, username=name, display_name=name, email="x@y.org")
        await _deliver(h, _env(registered))
    await h.feed_page(bob)
    await _deliver(h, _env(UserFollowed(follower_id=b, followee_id=a, followed_at=utcnow())))
    return a, bob


async def _snapshot(h: FeedHarness, users: Sequence[User]) -> list[Any]:
    state: list[Any] = []
    for user in users:
        pages = []
        cursor = None
        while True:
            body = await h.feed_page(user, limit=2, cursor=cursor)
            pages.append(
                [
                    (
                        p["id"],
                        p["content"],
                        p["like_count"],
                        p["comment_count"],
                        p["liked_by_me"],
                        p["author"]["display_name"],
                    )
                    for p in body["items"]
                ]
            )
            cursor = body["next_cursor"]
            if cursor is None:
                break
        response = await h.client.get("/api/v1/me/notifications", headers=user.auth)
        notes = response.json()
        state.append(
            (
                pages,
                [(n["type"], n["actor"]["id"], n["post_id"]) for n in notes["items"]],
                notes["unread_count"],
            )
        )
    return state


async def test_every_event_type_delivered_twice_leaves_the_same_feeds(
    harness_factory: Any,
) -> None:
    h: FeedHarness = await harness_factory(run_workers=False)
    (a, an), (b, bn), (c, cn) = _people(["alice", "bob", "carol"])
    h.graph.known |= {a, b, c}
    users = [User(u, n, h.tokens.mint(u, n)) for u, n in ((a, an), (b, bn), (c, cn))]
    now = utcnow()
    p1, p2, p3 = new_id(), new_id(), new_id()
    steps: list[EventEnvelope] = [
        _env(UserRegistered(user_id=a, username=an, display_name="Alice", email="a@x.org")),
        _env(UserRegistered(user_id=b, username=bn, display_name="Bob", email="b@x.org")),
        _env(UserRegistered(user_id=c, username=cn, display_name="Carol", email="c@x.org")),
        _env(UserFollowed(follower_id=b, followee_id=a, followed_at=now)),
        _env(UserFollowed(follower_id=c, followee_id=a, followed_at=now)),
        _env(UserFollowed(follower_id=a, followee_id=c, followed_at=now)),
        _env(PostCreated(post_id=p1, author_id=a, content="one", created_at=now)),
        _env(
            PostCreated(
                post_id=p2,
                author_id=a,
                content="two",
                created_at=now + timedelta(milliseconds=5),
                mention_ids=[c],
            )
        ),
        _env(PostCreated(post_id=p3, author_id=c, content="three", created_at=now)),
        _env(PostUpdated(post_id=p1, author_id=a, content="one!", edited_at=now)),
        _env(PostLiked(post_id=p1, post_author_id=a, user_id=b)),
        _env(PostLiked(post_id=p1, post_author_id=a, user_id=c)),
        _env(PostUnliked(post_id=p1, post_author_id=a, user_id=c)),
        _env(CommentCreated(comment_id=new_id(), post_id=p1, post_author_id=a, author_id=b)),
        _env(UserUpdated(user_id=a, username=an, display_name="Alice A.")),
    ]
    cid = new_id()
    steps += [
        _env(CommentCreated(comment_id=cid, post_id=p2, post_author_id=a, author_id=c)),
        _env(CommentDeleted(comment_id=cid, post_id=p2, post_author_id=a, author_id=c)),
        _env(UserUnfollowed(follower_id=a, followee_id=c)),
        _env(PostDeleted(post_id=p3, author_id=c)),
        _env(UserDeleted(user_id=c)),
    ]
    snapshots: dict[int, list[Any]] = {}
    for times in (1, 2):
        await flush(h.target)
        # Each pass replays c's whole life, account deletion included: forget the first pass's
        # deletion, which the token deny-list would otherwise answer with 401 for c's reads
        # (once its one-second refresh has seen it).
        h.feed.state.deleted_users._until.clear()
        trail: list[Any] = []
        for user in users:
            await h.feed_page(user)  # built feeds take fan-out
        for envelope in steps:
            await _deliver(h, envelope, times)
            trail.append(await _snapshot(h, users[:2]))
        snapshots[times] = trail
    assert snapshots[1] == snapshots[2]
    final = snapshots[1][-1]
    bob_pages = final[1][0]
    assert [item[0] for page in bob_pages for item in page] == [p2, p1]
    assert bob_pages[0][1][1:5] == ("one!", 1, 1, True)
    # No member twice in any feed, whatever the redeliveries.
    for user in users[:2]:
        members = await h.redis.zrange(f"feed:{{u:{user.id}}}", 0, -1)
        assert len(members) == len(set(members)) == 2


async def test_redelivered_post_created_through_the_queue_shows_once(h: FeedHarness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    await h.feed_page(bob)
    await h.follow(bob, alice)
    await eventually(lambda: h.redis.sismember(f"followers:{{u:{alice.id}}}", bob.id))
    envelope = _env(
        PostCreated(post_id=new_id(), author_id=alice.id, content="once", created_at=utcnow())
    )
    for _ in range(3):
        await h.publish(envelope)
    liked = _env(
        PostLiked(post_id=envelope.data["post_id"], post_author_id=alice.id, user_id=bob.id)
    )
    await h.publish(liked)
    await h.publish(liked)

    async def seen() -> bool:
        items = (await h.feed_page(bob))["items"]
        return [p["id"] for p in items] == [envelope.data["post_id"]] and items[0][
            "like_count"
        ] == 1

    await eventually(seen)

    async def notified_once() -> bool:
        response = await h.client.get("/api/v1/me/notifications", headers=alice.auth)
        return sorted(n["type"] for n in response.json()["items"]) == ["follow", "like"]

    # The like's notification lands just after its counter; never a second one.
    await eventually(notified_once)
    assert await h.redis.xlen(f"notif:{{u:{alice.id}}}") == 2


async def test_post_deleted_before_post_created_never_shows(harness_factory: Any) -> None:
    h: FeedHarness = await harness_factory(run_workers=False)
    (a, an), (b, bn) = _people(["alice", "bob"])
    h.graph.known |= {a, b}
    bob = User(b, bn, h.tokens.mint(b, bn))
    alice = User(a, an, h.tokens.mint(a, an))
    for uid, name in ((a, an), (b, bn)):
        await _deliver(
            h, _env(UserRegistered(user_id=uid, username=name, display_name=name, email="x@y.org"))
        )
    await h.feed_page(bob)
    await h.feed_page(alice)
    await _deliver(h, _env(UserFollowed(follower_id=b, followee_id=a, followed_at=utcnow())))
    post_id = new_id()
    await _deliver(h, _env(PostDeleted(post_id=post_id, author_id=a)))
    await _deliver(
        h, _env(PostCreated(post_id=post_id, author_id=a, content="zombie", created_at=utcnow()))
    )
    assert await h.feed_ids(bob) == []
    assert await h.feed_ids(alice) == []
    for user in (a, b):
        assert not await h.redis.zscore(f"feed:{{u:{user}}}", f"{post_id}:{a}")
    assert not await h.redis.exists(f"post:{{p:{post_id}}}")


async def test_reads_rebuild_correct_feeds_after_redis_loses_everything(h: FeedHarness) -> None:
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    await h.feed_page(bob)
    await h.follow(bob, alice)
    await h.follow(bob, carol)
    await eventually(lambda: h.redis.sismember(f"followers:{{u:{carol.id}}}", bob.id))
    posts = [
        await h.post(user, f"{user.username} {n}") for n in range(3) for user in (alice, carol)
    ]
    mine = await h.post(bob, "bob's own")
    expected = [mine["id"], *[p["id"] for p in reversed(posts)]]
    await eventually(lambda: _feed_is(h, bob, expected))
    before = await h.feed_page(bob, limit=100)

    await flush(h.target)
    after = await h.feed_page(bob, limit=100)
    assert after == before
    assert await h.all_pages(bob, 3) == [expected[i : i + 3] for i in range(0, len(expected), 3)]

    # Follower sets come back from network_service: a new post still fans out.
    fresh = await h.post(alice, "after the flush")
    await eventually(lambda: _feed_is(h, bob, [fresh["id"], *expected]))


async def test_idle_feed_expires_is_skipped_and_rebuilt(harness_factory: Any) -> None:
    h: FeedHarness = await harness_factory(idle_days=1.5 / 86_400)
    alice, bob = await h.user("alice"), await h.user("bob")
    await h.feed_page(bob)
    await h.follow(bob, alice)
    await eventually(lambda: h.redis.sismember(f"followers:{{u:{alice.id}}}", bob.id))
    await eventually(lambda: _gone(h, f"feedmeta:{{u:{bob.id}}}"), timeout=10)
    post = await h.post(alice, "while bob is away")
    await eventually(lambda: _feed_is(h, alice, [post["id"]]))
    assert not await h.redis.exists(f"feed:{{u:{bob.id}}}")  # fan-out skipped the idle feed
    assert await h.feed_ids(bob) == [post["id"]]  # rebuilt on read


async def test_marker_tells_a_missing_feed_from_an_empty_one(h: FeedHarness) -> None:
    carol = await h.user("carol")
    assert await h.feed_ids(carol) == []
    calls = h.graph.followee_calls
    assert calls == 1
    assert await h.feed_ids(carol) == []
    assert h.graph.followee_calls == calls  # empty but built: no rebuild
    await h.redis.delete(f"feedmeta:{{u:{carol.id}}}")
    assert await h.feed_ids(carol) == []
    assert h.graph.followee_calls == calls + 1


async def _feed_is(h: FeedHarness, user: User, ids: list[str]) -> bool:
    return await h.feed_ids(user) == ids


async def _gone(h: FeedHarness, key: str) -> bool:
    return not await h.redis.exists(key)


def _scenario(big: str, small: Sequence[str], reader: str, other: str) -> list[EventEnvelope]:
    """The same events for both runs: the big author, small authors, interleaved posts."""
    now = utcnow()
    events: list[EventEnvelope] = []
    for uid in (big, *small, reader, other):
        registered = UserRegistered(
            user_id=uid, username=f"u{uid[-6:]}", display_name="U", email="u@x.org"
        )
        events.append(_env(registered))
    for follower, followee in [(reader, big), (other, big), *[(reader, s) for s in small]]:
        followed = UserFollowed(follower_id=follower, followee_id=followee, followed_at=now)
        events.append(_env(followed))
    # Interleaved times with ties, so ordering and keyset paging are really exercised.
    authors = [big, *small, reader]
    for n in range(23):
        created = PostCreated(
            post_id=new_id(),
            author_id=authors[n % len(authors)],
            content=f"n{n}",
            created_at=now + timedelta(milliseconds=(n // 2) * 3),
        )
        events.append(_env(created))
    return events


async def test_hybrid_gives_the_same_feed_and_pages_as_full_fan_out(harness_factory: Any) -> None:
    big, s1, s2, reader, other = (new_id() for _ in range(5))
    events = _scenario(big, [s1, s2], reader, other)
    results: dict[str, Any] = {}
    for mode, threshold in (("fanout", 1000), ("hybrid", 1)):
        h: FeedHarness = await harness_factory(run_workers=False, hybrid_threshold=threshold)
        await flush(h.target)
        h.graph.known |= {big, s1, s2, reader, other}
        for follower, followee in [(reader, big), (other, big), (reader, s1), (reader, s2)]:
            h.graph.follows.setdefault(follower, set()).add(followee)
        user = User(reader, f"u{reader[-6:]}", h.tokens.mint(reader, "r"))
        await h.feed_page(user)
        for envelope in events:
            await _deliver(h, envelope)
        stored = await h.redis.zrange(f"feed:{{u:{reader}}}", 0, -1)
        results[mode] = {
            "pages": {limit: await h.all_pages(user, limit) for limit in (1, 3, 7, 100)},
            "big_stored": [m for m in stored if m.endswith(":" + big)],
        }
    assert results["fanout"]["big_stored"], "full fan-out writes the big author's posts"
    assert results["hybrid"]["big_stored"] == [], "hybrid leaves them out of the feed"
    assert results["hybrid"]["pages"] == results["fanout"]["pages"]
    assert len(results["fanout"]["pages"][100][0]) == 23


async def test_feeds_are_capped_and_keep_the_newest(harness_factory: Any) -> None:
    # Trimmed once over cap + slack (4 here): the fifth post trims back to the cap.
    h: FeedHarness = await harness_factory(run_workers=False, feed_cap=3, trim_slack=1)
    a, bob = await _bob_follows_alice(h)
    now = utcnow()
    post_ids = [new_id() for _ in range(5)]
    sizes = []
    for n, post_id in enumerate(post_ids):
        created = now + timedelta(milliseconds=n)
        await _deliver(
            h, _env(PostCreated(post_id=post_id, author_id=a, content=f"{n}", created_at=created))
        )
        sizes.append(await h.redis.zcard(f"feed:{{u:{bob.id}}}"))
    # No trim up to cap + slack (single node and cluster alike), then back to the cap.
    assert sizes == [1, 2, 3, 4, 3]
    assert await h.feed_ids(bob) == list(reversed(post_ids))[:3]
    # Every entry names its author.
    assert all(m.endswith(":" + a) for m in await h.redis.zrange(f"feed:{{u:{bob.id}}}", 0, -1))


async def test_delivery_sets_a_ttl_only_on_a_new_feed_key(harness_factory: Any) -> None:
    """An existing feed keeps its TTL (reads renew it with the marker's); a feed key the
    delivery creates gets the marker's."""
    h: FeedHarness = await harness_factory(run_workers=False)
    (a, an), (b, bn), (c, cn) = _people(["alice", "bob", "carol"])
    h.graph.known |= {a, b, c}
    for uid, name in ((a, an), (b, bn), (c, cn)):
        registered = UserRegistered(user_id=uid, username=name, display_name=name, email="x@y.org")
        await _deliver(h, _env(registered))
    for uid, name in ((b, bn), (c, cn)):
        await h.feed_page(User(uid, name, h.tokens.mint(uid, name)))
        await _deliver(h, _env(UserFollowed(follower_id=uid, followee_id=a, followed_at=utcnow())))
    await h.redis.zadd(f"feed:{{u:{b}}}", {"old:x": 1})
    await h.redis.pexpire(f"feed:{{u:{b}}}", 60_000)
    await h.redis.delete(f"feed:{{u:{c}}}")
    await _deliver(
        h, _env(PostCreated(post_id=new_id(), author_id=a, content="hi", created_at=utcnow()))
    )
    assert 0 < await h.redis.pttl(f"feed:{{u:{b}}}") <= 60_000
    marker_ttl = await h.redis.pttl(f"feedmeta:{{u:{c}}}")
    assert await h.redis.zcard(f"feed:{{u:{c}}}") == 1
    assert marker_ttl - 5_000 < await h.redis.pttl(f"feed:{{u:{c}}}") <= marker_ttl


async def test_likes_and_comments_consumed_before_their_post_are_counted(
    harness_factory: Any,
) -> None:
    """The consumer runs deliveries concurrently, so a like or comment can be handled before
    (or while) its post.created is: the counts must still come out right, duplicates included."""
    h: FeedHarness = await harness_factory(run_workers=False)
    a, bob = await _bob_follows_alice(h)

    early = new_id()
    await _deliver(h, _env(PostLiked(post_id=early, post_author_id=a, user_id=bob.id)), times=2)
    commented = CommentCreated(
        comment_id=new_id(), post_id=early, post_author_id=a, author_id=bob.id
    )
    await _deliver(h, _env(commented), times=2)
    created = _env(PostCreated(post_id=early, author_id=a, content="late", created_at=utcnow()))
    await _deliver(h, created, times=3)

    racing = new_id()
    created = _env(
        PostCreated(
            post_id=racing,
            author_id=a,
            content="racing",
            created_at=utcnow() + timedelta(milliseconds=5),
        )
    )
    liked = _env(PostLiked(post_id=racing, post_author_id=a, user_id=bob.id))
    handlers = h.runtime.events.handlers()
    await asyncio.gather(
        *(handlers.handle(created) for _ in range(3)),
        *(handlers.handle(liked) for _ in range(2)),
    )

    items = (await h.feed_page(bob))["items"]
    counts = [(p["id"], p["like_count"], p["comment_count"], p["liked_by_me"]) for p in items]
    assert counts == [(racing, 1, 0, True), (early, 1, 1, True)]


async def test_edits_consumed_before_their_post_show_the_newest_content(
    harness_factory: Any,
) -> None:
    """A post.updated handled before (or while) its post.created must not be lost: the feed
    shows the newest edit, and an older edit (reordered or redelivered) never wins."""
    h: FeedHarness = await harness_factory(run_workers=False)
    a, bob = await _bob_follows_alice(h)
    now = utcnow()

    def edit(post_id: str, content: str, seconds: int) -> EventEnvelope:
        edited_at = now + timedelta(seconds=seconds)
        return _env(PostUpdated(post_id=post_id, author_id=a, content=content, edited_at=edited_at))

    early = new_id()
    await _deliver(h, edit(early, "early v2", 2), times=2)
    await _deliver(h, edit(early, "early v1", 1), times=2)
    created = _env(PostCreated(post_id=early, author_id=a, content="early v0", created_at=now))
    await _deliver(h, created, times=3)
    await _deliver(h, edit(early, "early v1", 1))

    racing = new_id()
    created = _env(
        PostCreated(
            post_id=racing,
            author_id=a,
            content="racing v0",
            created_at=now + timedelta(milliseconds=5),
        )
    )
    handlers = h.runtime.events.handlers()
    await asyncio.gather(
        *(handlers.handle(edit(racing, "racing v1", 1)) for _ in range(2)),
        *(handlers.handle(created) for _ in range(3)),
        *(handlers.handle(edit(racing, "racing v2", 2)) for _ in range(2)),
    )

    items = (await h.feed_page(bob))["items"]
    assert [(p["id"], p["content"]) for p in items] == [
        (racing, "racing v2"),
        (early, "early v2"),
    ]
    newest = format_timestamp(now + timedelta(seconds=2))
    assert [p["edited_at"] for p in items] == [newest, newest]
