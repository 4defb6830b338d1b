"""The user timeline: keyset pagination, stable while new posts arrive."""

from __future__ import annotations

from typing import Any

from tests.post_service.conftest import PostHarness
from tests.support.jwt import User


async def _page(post: PostHarness, user: User, **params: Any) -> dict[str, Any]:
    r = await post.client.get(f"/api/v1/users/{user.id}/posts", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_timeline_is_newest_first_and_paginated(post: PostHarness) -> None:
    alice = post.user("alice")
    bob = post.user("bob")
    ids = [(await post.post(alice, f"post {i}"))["id"] for i in range(5)]
    await post.post(bob, "not alice's")

    first = await _page(post, alice, limit=2)
    assert [p["id"] for p in first["items"]] == ids[::-1][:2]
    assert first["next_cursor"]
    second = await _page(post, alice, limit=2, cursor=first["next_cursor"])
    third = await _page(post, alice, limit=2, cursor=second["next_cursor"])
    assert [p["id"] for p in second["items"]] == ids[::-1][2:4]
    assert [p["id"] for p in third["items"]] == ids[::-1][4:]
    assert third["next_cursor"] is None

    everything = await _page(post, alice)
    assert [p["id"] for p in everything["items"]] == ids[::-1]
    assert everything["next_cursor"] is None


async def test_paging_is_stable_while_posts_are_created(post: PostHarness) -> None:
    alice = post.user("alice")
    old = [(await post.post(alice, f"old {i}"))["id"] for i in range(7)]
    seen: list[str] = []
    page = await _page(post, alice, limit=3)
    while True:
        seen += [p["id"] for p in page["items"]]
        # New posts between pages must neither shift old ones into a repeat nor push any out.
        await post.post(alice, "interleaved")
        await post.post(alice, "interleaved again")
        if page["next_cursor"] is None:
            break
        page = await _page(post, alice, limit=3, cursor=page["next_cursor"])
    assert seen == old[::-1]


async def test_timeline_shows_liked_by_me_for_the_viewer(post: PostHarness) -> None:
    alice = post.user("alice")
    bob = post.user("bob")
    created = await post.post(alice, "like me")
    await post.client.put(f"/api/v1/posts/{created['id']}/like", headers=bob.auth)
    as_bob = (await post.client.get(f"/api/v1/users/{alice.id}/posts", headers=bob.auth)).json()[
        "items"
    ][0]
    anonymous = (await _page(post, alice))["items"][0]
    assert (as_bob["liked_by_me"], as_bob["like_count"]) == (True, 1)
    assert (anonymous["liked_by_me"], anonymous["like_count"]) == (False, 1)


async def test_timeline_of_unknown_user_is_404(post: PostHarness) -> None:
    r = await post.client.get("/api/v1/users/nobody/posts")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_timeline_of_known_user_without_posts_is_empty(post: PostHarness) -> None:
    dora = await post.registered("dora")
    assert await _page(post, dora) == {"items": [], "next_cursor": None}


async def test_bad_limit_or_cursor_is_422(post: PostHarness) -> None:
    alice = post.user("alice")
    await post.post(alice, "x")
    for params in (
        {"limit": 0},
        {"limit": 101},
        {"limit": "many"},
        {"cursor": "!!!not-base64!!!"},
        {"cursor": "eyJ4IjoxfQ"},  # valid base64 JSON, but not one of our cursors
        {"cursor": "eyJ0Ijoibm90LWEtZGF0ZSIsImlkIjoieCJ9"},  # {"t":"not-a-date","id":"x"}
    ):
        r = await post.client.get(f"/api/v1/users/{alice.id}/posts", params=params)
        assert r.status_code == 422, params
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (await _page(post, alice, limit=100))["items"]
