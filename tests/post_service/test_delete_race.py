"""A post deleted while someone likes or comments on it: 404, never a 500 or SQL text."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from post_service.repository.comments import CommentRepository
from post_service.repository.likes import LikeRepository
from tests.post_service.conftest import PostHarness


async def _delete_post_elsewhere(post: PostHarness, post_id: str) -> None:
    # Another transaction, committed: the request's own transaction has already seen the post.
    async with post.app.state.engine.begin() as conn:
        await conn.execute(text("DELETE FROM posts WHERE id = :id"), {"id": post_id})


def _deleting_first(
    post: PostHarness, post_id: str, real: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    async def insert_after_delete(self: Any, *args: Any, **kwargs: Any) -> Any:
        await _delete_post_elsewhere(post, post_id)
        return await real(self, *args, **kwargs)

    return insert_after_delete


async def test_like_of_a_post_deleted_meanwhile_is_a_404(
    post: PostHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    author = await post.registered("racer")
    fan = await post.registered("fan")
    created = await post.post(author, "about to vanish")
    monkeypatch.setattr(
        LikeRepository, "add", _deleting_first(post, created["id"], LikeRepository.add)
    )

    response = await post.client.put(f"/api/v1/posts/{created['id']}/like", headers=fan.auth)

    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"] == "Post not found"
    assert "violat" not in response.text.lower() and "insert" not in response.text.lower()
    assert await post.outbox_types(created["id"]) == ["post.created"]  # nothing announced


async def test_comment_on_a_post_deleted_meanwhile_is_a_404(
    post: PostHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    author = await post.registered("racer2")
    fan = await post.registered("fan2")
    created = await post.post(author, "about to vanish too")
    monkeypatch.setattr(
        CommentRepository, "add", _deleting_first(post, created["id"], CommentRepository.add)
    )

    response = await post.client.post(
        f"/api/v1/posts/{created['id']}/comments", json={"content": "hi"}, headers=fan.auth
    )

    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"] == "Post not found"
    assert "violat" not in response.text.lower() and "insert" not in response.text.lower()
    assert await post.outbox_types(created["id"]) == ["post.created"]
