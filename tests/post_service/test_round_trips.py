"""PostgreSQL round trips per read (issue 14): the user timeline in at most three.

Counted on the real engine: every statement (``before_cursor_execute``) and every pool
pre-ping (the dialect's ``do_ping``). BEGIN and COMMIT, sent by the driver outside both, are
not counted. The app's own background reads (the deny-list refresh) are slowed down so that
only the request under test is counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import event

from common.internal import internal_headers
from post_service.app import create_app
from tests.post_service.conftest import PostHarness, make_settings
from tests.support.jwt import TokenFactory

MAX_TIMELINE_ROUND_TRIPS = 3


@dataclass
class RoundTrips:
    statements: list[str] = field(default_factory=list)
    pings: int = 0

    @property
    def total(self) -> int:
        return len(self.statements) + self.pings

    def reset(self) -> None:
        self.statements.clear()
        self.pings = 0


@pytest.fixture
async def post(
    post_database: str, redis_url: str, tokens: TokenFactory
) -> AsyncIterator[PostHarness]:
    app = create_app(make_settings(post_database, redis_url, deny_list_refresh_s=3600.0))
    app.state.token_verifier = tokens.verifier()
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://post.test"
        ) as client,
    ):
        yield PostHarness(app, client, tokens)


@pytest.fixture
def round_trips(post: PostHarness, monkeypatch: pytest.MonkeyPatch) -> Iterator[RoundTrips]:
    counted = RoundTrips()
    engine = post.app.state.engine.sync_engine
    ping = engine.dialect.do_ping

    def counting_ping(dbapi_connection: Any) -> bool:
        counted.pings += 1
        return bool(ping(dbapi_connection))

    def on_statement(*args: Any) -> None:
        counted.statements.append(args[2])

    monkeypatch.setattr(engine.dialect, "do_ping", counting_ping)
    event.listen(engine, "before_cursor_execute", on_statement)
    yield counted
    event.remove(engine, "before_cursor_execute", on_statement)


async def test_a_timeline_page_takes_at_most_three_round_trips(
    post: PostHarness, round_trips: RoundTrips
) -> None:
    alice = await post.registered("alice")
    bob = await post.registered("bob")
    for i in range(5):
        await post.post(alice, f"post {i} for @bob #tag")
    liked = await post.post(alice, "like me")
    await post.client.put(f"/api/v1/posts/{liked['id']}/like", headers=bob.auth)

    # Warm the pool first, so the page under test checks out a used connection (pre-ping).
    await post.client.get(f"/api/v1/users/{alice.id}/posts")
    for headers, params in [
        ({}, {"limit": 3}),
        (bob.auth, {"limit": 3}),
    ]:
        round_trips.reset()
        r = await post.client.get(f"/api/v1/users/{alice.id}/posts", params=params, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) == 3
        assert page["items"][0]["liked_by_me"] is bool(headers)
        assert page["items"][1]["mentions"][0]["username"] == "bob"
        assert round_trips.pings >= 1
        assert round_trips.total <= MAX_TIMELINE_ROUND_TRIPS, round_trips

        round_trips.reset()
        nxt = await post.client.get(
            f"/api/v1/users/{alice.id}/posts",
            params={**params, "cursor": page["next_cursor"]},
            headers=headers,
        )
        assert nxt.status_code == 200
        assert len(nxt.json()["items"]) == 3
        assert round_trips.total <= MAX_TIMELINE_ROUND_TRIPS, round_trips


async def test_an_unknown_user_timeline_takes_at_most_three_round_trips(
    post: PostHarness, round_trips: RoundTrips
) -> None:
    await post.client.get("/api/v1/users/nobody/posts")
    round_trips.reset()
    r = await post.client.get("/api/v1/users/nobody/posts")
    assert r.status_code == 404
    assert round_trips.total <= MAX_TIMELINE_ROUND_TRIPS, round_trips


async def test_the_read_your_own_writes_call_takes_two_round_trips(
    post: PostHarness, round_trips: RoundTrips
) -> None:
    alice = post.user("alice")
    await post.post(alice, "mine")
    body = {"author_ids": [alice.id], "limit_per_author": 20}
    headers = internal_headers(post.app.state.settings)
    await post.client.post("/internal/v1/posts/recent", json=body, headers=headers)
    round_trips.reset()
    r = await post.client.post("/internal/v1/posts/recent", json=body, headers=headers)
    assert r.status_code == 200
    assert len(r.json()["items"]) == 1
    assert round_trips.total <= 2, round_trips
