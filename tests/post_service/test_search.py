"""Full-text search (ranked) and listing by hashtag."""

from __future__ import annotations

from typing import Any

from tests.post_service.conftest import PostHarness


async def _search(post: PostHarness, **params: Any) -> dict[str, Any]:
    r = await post.client.get("/api/v1/posts", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_search_ranks_the_better_match_first(post: PostHarness) -> None:
    alice = post.user("alice")
    weak = await post.post(alice, "Went hiking today; later some gardening and a little cooking.")
    strong = await post.post(
        alice, "Gardening tips: gardening in spring, gardening in autumn, gardens everywhere."
    )
    await post.post(alice, "Nothing relevant here at all.")

    result = await _search(post, q="gardening")
    assert [p["id"] for p in result["items"]] == [strong["id"], weak["id"]]
    # Stemming: "gardens" and "garden" match the same posts.
    assert {p["id"] for p in (await _search(post, q="garden"))["items"]} == {
        strong["id"],
        weak["id"],
    }
    # websearch syntax: both words required, quoted phrases, exclusion.
    both = await _search(post, q="gardening hiking")
    assert [p["id"] for p in both["items"]] == [weak["id"]]
    excluded = await _search(post, q="gardening -hiking")
    assert [p["id"] for p in excluded["items"]] == [strong["id"]]
    assert (await _search(post, q="zebra"))["items"] == []


async def test_search_results_page_without_repeats_or_skips(post: PostHarness) -> None:
    alice = post.user("alice")
    ids = set()
    for i in range(7):
        ids.add((await post.post(alice, "rust " * (i % 3 + 1) + f"post {i}"))["id"])
    seen: list[str] = []
    params: dict[str, Any] = {"q": "rust", "limit": 3}
    ranks_seen = 0
    while True:
        page = await _search(post, **params)
        seen += [p["id"] for p in page["items"]]
        ranks_seen += 1
        await post.post(alice, "rust rust rust rust arrives mid-paging")
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert len(seen) == len(set(seen))
    assert set(seen) >= ids
    assert ranks_seen >= 3


async def test_search_shows_liked_by_me(post: PostHarness) -> None:
    alice, bob = post.user("alice"), post.user("bob")
    p = await post.post(alice, "searchable words")
    await post.client.put(f"/api/v1/posts/{p['id']}/like", headers=bob.auth)
    r = await post.client.get("/api/v1/posts", params={"q": "searchable"}, headers=bob.auth)
    assert r.json()["items"][0]["liked_by_me"] is True


async def test_empty_or_missing_query_is_422(post: PostHarness) -> None:
    for params in ({"q": ""}, {"q": "   "}, {}, {"tag": ""}, {"tag": "#"}):
        r = await post.client.get("/api/v1/posts", params=params)
        assert r.status_code == 422, params
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await post.client.get("/api/v1/posts", params={"q": "x", "cursor": "garbage!"})
    assert r.status_code == 422
    r = await post.client.get("/api/v1/posts", params={"q": "x", "limit": 0})
    assert r.status_code == 422


async def test_listing_by_hashtag_newest_first(post: PostHarness) -> None:
    alice, bob = post.user("alice"), post.user("bob")
    a = await post.post(alice, "#Python is fun")
    await post.post(alice, "#rust is fast")
    b = await post.post(bob, "more #PYTHON and #python")
    c = await post.post(alice, "last #python")

    everything = await _search(post, tag="python")
    assert [p["id"] for p in everything["items"]] == [c["id"], b["id"], a["id"]]
    # The tag is case-insensitive and may carry its '#'.
    assert await _search(post, tag="#PyThOn") == everything

    first = await _search(post, tag="python", limit=2)
    assert [p["id"] for p in first["items"]] == [c["id"], b["id"]]
    await post.post(bob, "#python arrives between pages")
    second = await _search(post, tag="python", limit=2, cursor=first["next_cursor"])
    assert [p["id"] for p in second["items"]] == [a["id"]]
    assert second["next_cursor"] is None
    assert (await _search(post, tag="unused"))["items"] == []


async def test_search_within_a_hashtag(post: PostHarness) -> None:
    alice = post.user("alice")
    tagged = await post.post(alice, "async io #python")
    await post.post(alice, "async io #rust")
    result = await _search(post, q="async", tag="python")
    assert [p["id"] for p in result["items"]] == [tagged["id"]]
