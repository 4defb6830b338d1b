"""post_service while its PostgreSQL stops under load: 503, never 500, and recovery after."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from deploy.local.postgres import PostgresServer
from tests.conftest import MakeDatabase, database_maker
from tests.post_service.conftest import PostHarness


@pytest.fixture
def make_database(private_postgres: PostgresServer) -> MakeDatabase:
    """Overrides the session's PostgreSQL: this module stops its own."""
    return database_maker(private_postgres)


async def test_likes_answer_503_while_postgres_is_down_and_succeed_once_it_is_back(
    post: PostHarness, private_postgres: PostgresServer
) -> None:
    author = post.user()
    created = await post.client.post(
        "/api/v1/posts", json={"content": "hello"}, headers=author.auth
    )
    assert created.status_code == 201, created.text
    post_id = created.json()["id"]
    statuses: Counter[int] = Counter()
    bodies: list[str] = []
    stopped = asyncio.Event()

    async def like_until_stopped() -> None:
        # Requests in flight all through the shutdown, then a few against the stopped server.
        after_stop = 0
        while after_stop < 3:
            if stopped.is_set():
                after_stop += 1
            # A new liker each time: every like inserts its author row first (the finding's
            # `INSERT INTO authors`).
            liker = post.user()
            r = await post.client.put(f"/api/v1/posts/{post_id}/like", headers=liker.auth)
            statuses[r.status_code] += 1
            if r.status_code not in (204, 503):
                bodies.append(r.text)

    async def stop_in_flight() -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(private_postgres.stop)
        stopped.set()

    await asyncio.gather(stop_in_flight(), *(like_until_stopped() for _ in range(8)))
    down = post.user()
    r = await post.client.put(f"/api/v1/posts/{post_id}/like", headers=down.auth)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert set(statuses) <= {204, 503}, (statuses, bodies[:3])
    assert statuses[503] > 0, statuses

    await asyncio.to_thread(private_postgres.start)
    # Pooled connections died with the server: pre-ping replaces them, no request fails.
    after = [post.user() for _ in range(16)]
    results = await asyncio.gather(
        *(post.client.put(f"/api/v1/posts/{post_id}/like", headers=u.auth) for u in after)
    )
    assert [r.status_code for r in results] == [204] * 16, [r.text for r in results]
