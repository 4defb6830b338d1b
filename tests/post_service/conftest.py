"""post_service running in-process against a fresh PostgreSQL database per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select, text

from common.events import EventEnvelope, EventPayload, make_envelope
from common.ids import new_id
from post_service.app import create_app
from post_service.events.handlers import build_handlers
from post_service.migrations import upgrade
from post_service.models import outbox
from post_service.settings import PostSettings
from tests.support.jwt import TokenFactory, User


@dataclass
class OutboxEvent:
    type: str
    data: dict[str, Any]
    aggregate_id: str | None


class PostHarness:
    """The app, an HTTP client to it, and direct access to its database and event handlers."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, tokens: TokenFactory) -> None:
        self.app = app
        self.client = client
        self.tokens = tokens
        self._handlers = build_handlers(app.state.sessionmaker)

    def user(self, username: str | None = None, user_id: str | None = None) -> User:
        """A user known only from its token (no user.registered yet)."""
        user_id = user_id or new_id()
        username = username or f"u{user_id[-8:].replace('-', '')}"
        return User(user_id, username, self.tokens.mint(user_id, username))

    async def registered(self, username: str, display_name: str | None = None) -> User:
        """A user whose user.registered event has been consumed."""
        user = self.user(username)
        await self.deliver(
            _registered(user.id, username, display_name or username.title()),
        )
        return user

    async def deliver(self, payload: EventPayload | EventEnvelope) -> None:
        envelope = (
            payload
            if isinstance(payload, EventEnvelope)
            else make_envelope(payload, producer="auth")
        )
        await self._handlers.handle(envelope)

    async def post(self, user: User, content: str, **extra: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/posts", json={"content": content, **extra}, headers=user.auth
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def outbox(self, aggregate_id: str | None = None) -> list[OutboxEvent]:
        stmt = select(outbox.c.type, outbox.c.payload, outbox.c.aggregate_id).order_by(outbox.c.seq)
        if aggregate_id is not None:
            stmt = stmt.where(outbox.c.aggregate_id == aggregate_id)
        async with self.app.state.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [OutboxEvent(t, p["data"], a) for t, p, a in rows]

    async def outbox_types(self, aggregate_id: str | None = None) -> list[str]:
        return [e.type for e in await self.outbox(aggregate_id)]

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.app.state.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()


def _registered(user_id: str, username: str, display_name: str) -> EventPayload:
    from common.events import UserRegistered

    return UserRegistered(
        user_id=user_id,
        username=username,
        display_name=display_name,
        email=f"{username}@example.com",
    )


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    return TokenFactory()


@pytest.fixture
async def post_database(make_database: Callable[[str], Awaitable[str]]) -> str:
    url = await make_database("post")
    await asyncio.to_thread(upgrade, url)
    return url


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> PostSettings:
    return PostSettings(
        database_url=database_url,
        redis_url=redis_url,
        # Fresh rate-limit buckets per app: every in-process client is 127.0.0.1.
        ratelimit_key_prefix=f"test:{uuid.uuid4().hex}",
        environment="test",
        run_workers=overrides.pop("run_workers", False),
        **overrides,
    )


@pytest.fixture
async def post(
    post_database: str, redis_url: str, tokens: TokenFactory
) -> AsyncIterator[PostHarness]:
    app = create_app(make_settings(post_database, redis_url))
    app.state.token_verifier = tokens.verifier()
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://post.test"
        ) as client,
    ):
        yield PostHarness(app, client, tokens)
