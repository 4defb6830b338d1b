"""Internal read API used by feed_service (docs/services.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from common.internal import INTERNAL_TOKEN_HEADER, internal_headers
from tests.post_service.conftest import PostHarness


@pytest.fixture(autouse=True)
def service_token(post: PostHarness) -> Iterator[None]:
    """Every request here is feed_service's: it carries the internal token."""
    post.client.headers.update(internal_headers(post.app.state.settings))
    yield
    del post.client.headers[INTERNAL_TOKEN_HEADER]


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong", 403), ("", 401)])
async def test_internal_api_needs_the_service_token(
    post: PostHarness, token: str | None, status: int
) -> None:
    del post.client.headers[INTERNAL_TOKEN_HEADER]
    headers = {} if token is None else {INTERNAL_TOKEN_HEADER: token}
    for path, body in [
        ("/internal/v1/posts/batch", {"ids": []}),
        ("/internal/v1/posts/recent", {"author_ids": [], "limit_per_author": 1}),
    ]:
        response = await post.client.post(path, json=body, headers=headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
    post.client.headers.update(internal_headers(post.app.state.settings))
    ok = await post.client.post("/internal/v1/posts/batch", json={"ids": []})
    assert ok.status_code == 200


async def test_batch_returns_existing_posts_in_request_order(post: PostHarness) -> None:
    alice, bob = post.user("alice"), post.user("bob")
    p1 = await post.post(alice, "one")
    p2 = await post.post(bob, "two @alice")
    await post.client.put(f"/api/v1/posts/{p1['id']}/like", headers=bob.auth)
    r = await post.client.post(
        "/internal/v1/posts/batch",
        json={"ids": [p2["id"], "missing", p1["id"], p2["id"]], "viewer_id": bob.id},
    )
    assert r.status_code == 200
    items = r.json()["items"]
    assert [p["id"] for p in items] == [p2["id"], p1["id"]]
    assert items[1]["liked_by_me"] is True and items[1]["like_count"] == 1
    assert items[0]["mentions"][0]["id"] == alice.id
    anonymous = (
        await post.client.post("/internal/v1/posts/batch", json={"ids": [p1["id"]]})
    ).json()
    assert anonymous["items"][0]["liked_by_me"] is False
    assert (
        await post.client.post("/internal/v1/posts/batch", json={"ids": [], "x": 1})
    ).status_code == 422


async def test_recent_returns_newest_posts_per_author(post: PostHarness) -> None:
    alice, bob, carol = post.user("alice"), post.user("bob"), post.user("carol")
    a = [await post.post(alice, f"a{i}") for i in range(4)]
    b = [await post.post(bob, f"b{i}") for i in range(2)]
    await post.post(carol, "not asked for")

    r = await post.client.post(
        "/internal/v1/posts/recent",
        json={"author_ids": [alice.id, bob.id, "ghost"], "limit_per_author": 3},
    )
    assert r.status_code == 200
    items = r.json()["items"]
    assert {i["id"] for i in items} == {p["id"] for p in a[1:] + b}
    times = [i["created_at"] for i in items]
    assert times == sorted(times, reverse=True)
    by_id = {p["id"]: p for p in a + b}
    for item in items:
        assert item["author_id"] == by_id[item["id"]]["author"]["id"]
        assert item["created_at"] == by_id[item["id"]]["created_at"]

    before = datetime.fromisoformat(a[2]["created_at"].replace("Z", "+00:00")).isoformat()
    older = (
        await post.client.post(
            "/internal/v1/posts/recent",
            json={"author_ids": [alice.id], "limit_per_author": 10, "before": before},
        )
    ).json()["items"]
    assert [i["id"] for i in older] == [a[1]["id"], a[0]["id"]]

    bad = await post.client.post(
        "/internal/v1/posts/recent", json={"author_ids": [alice.id], "limit_per_author": 201}
    )
    assert bad.status_code == 422
