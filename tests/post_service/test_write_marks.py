"""A new post marks its author (common.write_marks) after it is committed, so feed_service
asks post_service for the author's posts only when its feed lacks one."""

from __future__ import annotations

from datetime import datetime

import redis.asyncio

from common.time import to_ms
from common.write_marks import read_mark
from tests.post_service.conftest import PostHarness


async def test_a_new_post_marks_its_author_with_its_time(post: PostHarness, redis_url: str) -> None:
    alice = await post.registered("alice")
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await read_mark(client, alice.id) is None
        first = await post.post(alice, "one")
        created = to_ms(datetime.fromisoformat(first["created_at"].replace("Z", "+00:00")))
        assert await read_mark(client, alice.id) == created
        second = await post.post(alice, "two")
        mark = await read_mark(client, alice.id)
        assert mark is not None and mark >= created
        assert mark == to_ms(datetime.fromisoformat(second["created_at"].replace("Z", "+00:00")))
        # The post behind the mark is committed: a reader sees it at once.
        listed = await post.client.get(f"/api/v1/users/{alice.id}/posts", headers=alice.auth)
        assert listed.status_code == 200
        assert listed.json()["items"][0]["id"] == second["id"]
    finally:
        await client.aclose()
