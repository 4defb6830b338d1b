"""Crafted input (NUL, lone surrogates, forged cursors) is a 4xx problem, never a 500."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.post_service.conftest import PostHarness

# What the client sends as JSON text: httpx's json= cannot encode a lone surrogate.
SURROGATE_CONTENT = '{"content": "hello \\ud800 world"}'


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


def raw_cursor(json_text: str) -> str:
    """A cursor with exactly this JSON inside (forged, as a client could)."""
    return base64.urlsafe_b64encode(json_text.encode()).rstrip(b"=").decode()


def assert_invalid_cursor(response: httpx.Response) -> None:
    assert_problem(response, 422)
    assert response.json()["errors"] == [{"loc": ["query", "cursor"], "msg": "Invalid cursor"}]


async def test_malformed_token_is_401_on_search(post: PostHarness) -> None:
    token = "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6MTIzfQ.e30.AAAA"
    response = await post.client.get(
        "/api/v1/posts", params={"q": "x"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_surrogate_in_post_comment_and_edit_is_422(post: PostHarness) -> None:
    alice = post.user("alice")
    headers = {**alice.auth, "Content-Type": "application/json"}
    assert_problem(
        await post.client.post("/api/v1/posts", content=SURROGATE_CONTENT, headers=headers), 422
    )
    created = await post.post(alice, "a fine post")
    edited = await post.client.patch(
        f"/api/v1/posts/{created['id']}", content=SURROGATE_CONTENT, headers=headers
    )
    assert_problem(edited, 422)
    commented = await post.client.post(
        f"/api/v1/posts/{created['id']}/comments", content=SURROGATE_CONTENT, headers=headers
    )
    assert_problem(commented, 422)
    assert (await post.client.get(f"/api/v1/posts/{created['id']}")).json()["content"] == (
        "a fine post"
    )


@pytest.mark.parametrize("params", [{"q": "a\x00b"}, {"tag": "a\x00b"}, {"q": "x", "tag": "\x00"}])
async def test_nul_in_search_is_422(post: PostHarness, params: dict[str, str]) -> None:
    assert_problem(await post.client.get("/api/v1/posts", params=params), 422)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/posts/a%00b",
        "/api/v1/posts/a%00b/likes",
        "/api/v1/posts/a%00b/comments",
        "/api/v1/users/a%00b/posts",
    ],
)
async def test_nul_in_path_is_4xx(post: PostHarness, path: str) -> None:
    response = await post.client.get(path)
    assert response.status_code in (404, 422), response.text


async def test_nul_in_idempotency_key_is_422(post: PostHarness) -> None:
    alice = post.user("alice")
    response = await post.client.post(
        "/api/v1/posts",
        json={"content": "hello"},
        headers={**alice.auth, "Idempotency-Key": "k\x00"},
    )
    assert_problem(response, 422)


_BAD_TIME_CURSORS = [
    '{"t": "0001-01-01T00:00:00+01:00", "id": "x"}',
    '{"t": "9999-12-31T23:59:59-01:00", "id": "x"}',
    '{"t": "2026-01-01T00:00:00", "id": "x"}',
    '{"t": "2026-01-01T00:00:00+00:00", "id": "a\\u0000b"}',
    '{"t": "2026-01-01T00:00:00+00:00", "id": "a\\ud800b"}',
    '{"t": 5, "id": "x"}',
    '{"t": "2026-01-01T00:00:00+00:00", "id": 5}',
]


@pytest.mark.parametrize("forged", _BAD_TIME_CURSORS)
async def test_forged_time_cursors_are_422(post: PostHarness, forged: str) -> None:
    alice = post.user("alice")
    created = await post.post(alice, "#topic hello")
    for path, params in [
        (f"/api/v1/users/{alice.id}/posts", {}),
        ("/api/v1/posts", {"tag": "topic"}),
        (f"/api/v1/posts/{created['id']}/likes", {}),
        (f"/api/v1/posts/{created['id']}/comments", {}),
    ]:
        response = await post.client.get(path, params={**params, "cursor": raw_cursor(forged)})
        assert_invalid_cursor(response)


@pytest.mark.parametrize(
    "forged",
    [
        '{"r": 1' + "0" * 400 + ', "id": "x"}',
        '{"r": 1e400, "id": "x"}',
        '{"r": -1e400, "id": "x"}',
        '{"r": NaN, "id": "x"}',
        '{"r": true, "id": "x"}',
        '{"r": "1", "id": "x"}',
        '{"r": 0.5, "id": "a\\u0000"}',
    ],
)
async def test_forged_rank_cursors_are_422(post: PostHarness, forged: str) -> None:
    response = await post.client.get(
        "/api/v1/posts", params={"q": "hello", "cursor": raw_cursor(forged)}
    )
    assert_invalid_cursor(response)


async def test_cursors_the_service_made_still_page(post: PostHarness) -> None:
    alice = post.user("alice")
    for i in range(3):
        await post.post(alice, f"#paged hello number {i}")
    for path, params in [
        (f"/api/v1/users/{alice.id}/posts", {}),
        ("/api/v1/posts", {"tag": "paged"}),
        ("/api/v1/posts", {"q": "hello"}),
    ]:
        seen: list[Any] = []
        cursor: str | None = None
        while True:
            query = {**params, "limit": 1, **({"cursor": cursor} if cursor else {})}
            page = (await post.client.get(path, params=query)).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 3, path
