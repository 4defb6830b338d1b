"""auth_service under test: the real app in-process over real PostgreSQL, Redis and RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from auth_service.app import create_app
from auth_service.migrations import upgrade
from auth_service.settings import AuthSettings
from tests.support.jwt import TokenFactory
from tests.support.sealing import unsealed

GENEROUS = "1000/minute"
PASSWORD = "correct horse battery"


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def random_ip() -> str:
    # Each client gets its own address, so per-IP limits of one test never touch another's.
    raw = uuid.uuid4().bytes
    return f"10.{raw[0]}.{raw[1]}.{raw[2] or 1}"


@pytest.fixture(scope="session")
async def auth_database(make_database: Callable[[str], Awaitable[str]]) -> str:
    url = await make_database("auth")
    await asyncio.to_thread(upgrade, url)
    return url


@pytest.fixture(scope="session")
def signing_factory() -> TokenFactory:
    """The key auth signs with, wrapped so tests can also forge broken tokens with it."""
    return TokenFactory()


def pem_of(factory: TokenFactory) -> str:
    return factory.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def auth_settings(
    auth_database: str, redis_url: str, signing_factory: TokenFactory
) -> Callable[..., AuthSettings]:
    def make(**overrides: Any) -> AuthSettings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": auth_database,
            "redis_url": redis_url,
            "run_workers": False,
            "bcrypt_rounds": 4,
            "signing_keys": pem_of(signing_factory),
            "public_base_url": "http://gateway.test",
            "ratelimit_key_prefix": f"test:{uuid.uuid4().hex}",
            "rate_login_account": GENEROUS,
            "rate_login_account_client": GENEROUS,
            "rate_login_ip": GENEROUS,
            "rate_register_ip": GENEROUS,
            "rate_resend_verification": GENEROUS,
            "rate_resend_verification_ip": GENEROUS,
            "rate_password_reset": GENEROUS,
            "rate_password_reset_ip": GENEROUS,
        }
        values.update(overrides)
        return AuthSettings(**values)

    return make


@asynccontextmanager
async def running(app: FastAPI, *, ip: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(ip or random_ip(), 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as client:
            yield client


@pytest.fixture
async def auth_app(auth_settings: Callable[..., AuthSettings]) -> AsyncIterator[FastAPI]:
    app = create_app(auth_settings())
    async with LifespanManager(app):
        yield app


@pytest.fixture
async def client(auth_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=auth_app, client=(random_ip(), 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as c:
        yield c


@pytest.fixture
def signing_kid(auth_app: FastAPI, signing_factory: TokenFactory) -> str:
    kid: str = auth_app.state.keys.active.kid
    signing_factory.kid = kid
    return kid


async def register(
    client: httpx.AsyncClient, *, password: str = PASSWORD, **fields: Any
) -> dict[str, Any]:
    username = fields.pop("username", None) or unique()
    body = {"username": username, "email": f"{username}@example.com", "password": password}
    body.update(fields)
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def login(client: httpx.AsyncClient, login_: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"login": login_, "password": password})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def outbox_events(database_url: str, user_id: str) -> list[dict[str, Any]]:
    """The envelopes auth wrote to its outbox for ``user_id``, oldest first."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT payload FROM outbox WHERE aggregate_id = :id ORDER BY seq"),
                {"id": user_id},
            )
            return [dict(row[0]) for row in rows]
    finally:
        await engine.dispose()


async def latest_token(database_url: str, user_id: str, event_type: str) -> str:
    events = [e for e in await outbox_events(database_url, user_id) if e["type"] == event_type]
    assert events, f"no {event_type} event for {user_id}"
    return unsealed(events[-1]["data"]["sealed"])["token"]
