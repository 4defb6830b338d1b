"""Registration: validation, case-insensitive uniqueness, races, and what comes back."""

from __future__ import annotations

import asyncio
from typing import Any

import bcrypt
import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from auth_service.service.passwords import PasswordHasher
from auth_service.settings import AuthSettings
from tests.auth_service.conftest import PASSWORD, outbox_events, register, unique
from tests.support.sealing import unsealed


async def test_register_returns_private_user_without_secrets(client: httpx.AsyncClient) -> None:
    username = unique()
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "username": username,
            "email": f"{username}@Example.com",
            "password": PASSWORD,
            "display_name": "Ada Lovelace",
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id",
        "username",
        "display_name",
        "bio",
        "created_at",
        "email",
        "email_verified",
    }
    assert body["username"] == username
    assert body["display_name"] == "Ada Lovelace"
    assert body["email_verified"] is False
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 24
    assert len(body["id"]) == 36 and body["id"][14] == "7"  # UUIDv7
    assert "$2b$" not in response.text and PASSWORD not in response.text


async def test_display_name_defaults_to_username(client: httpx.AsyncClient) -> None:
    user = await register(client)
    assert user["display_name"] == user["username"]


async def test_username_and_email_are_unique_regardless_of_case(
    client: httpx.AsyncClient,
) -> None:
    user = await register(client)
    same_name = await client.post(
        "/api/v1/auth/register",
        json={
            "username": user["username"].upper(),
            "email": f"{unique()}@example.com",
            "password": PASSWORD,
        },
    )
    assert same_name.status_code == 409
    assert same_name.headers["content-type"] == "application/problem+json"
    same_email = await client.post(
        "/api/v1/auth/register",
        json={"username": unique(), "email": user["email"].upper(), "password": PASSWORD},
    )
    assert same_email.status_code == 409


async def test_concurrent_registrations_of_one_name_give_one_201_and_one_409(
    client: httpx.AsyncClient,
) -> None:
    username = unique()

    async def attempt(i: int) -> int:
        response = await client.post(
            "/api/v1/auth/register",
            json={
                "username": username if i % 2 else username.upper(),
                "email": f"{unique()}@example.com",
                "password": PASSWORD,
            },
        )
        return response.status_code

    statuses = await asyncio.gather(*(attempt(i) for i in range(4)))
    assert sorted(statuses) == [201, 409, 409, 409]


async def test_password_limits_are_422_never_500(client: httpx.AsyncClient) -> None:
    def body(password: str) -> dict[str, Any]:
        name = unique()
        return {"username": name, "email": f"{name}@example.com", "password": password}

    for bad in ["short7c", "é" * 36 + "a", "x" * 73, "a" * 5000, "pass\x00word"]:
        response = await client.post("/api/v1/auth/register", json=body(bad))
        assert response.status_code == 422, (len(bad.encode()), response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert bad not in response.text  # input is never echoed
    # Exactly 72 bytes of UTF-8 (36 two-byte characters) is allowed; so are 8 characters.
    for good in ["é" * 36, "8chars!!"]:
        response = await client.post("/api/v1/auth/register", json=body(good))
        assert response.status_code == 201, response.text


async def test_bad_username_and_email_are_422(client: httpx.AsyncClient) -> None:
    for username in ["ab", "x" * 31, "has space", "dash-name", "émile"]:
        response = await client.post(
            "/api/v1/auth/register",
            json={"username": username, "email": f"{unique()}@example.com", "password": PASSWORD},
        )
        assert response.status_code == 422, username
    response = await client.post(
        "/api/v1/auth/register",
        json={"username": unique(), "email": "not-an-email", "password": PASSWORD},
    )
    assert response.status_code == 422


async def test_unknown_fields_are_422(client: httpx.AsyncClient) -> None:
    name = unique()
    for extra in ({"email_verified": True}, {"id": "x"}, {"is_admin": True}):
        response = await client.post(
            "/api/v1/auth/register",
            json={
                "username": name,
                "email": f"{name}@example.com",
                "password": PASSWORD,
                **extra,
            },
        )
        assert response.status_code == 422, extra
    for path, payload in [
        ("/api/v1/auth/login", {"login": name, "password": PASSWORD, "remember": True}),
        ("/api/v1/auth/refresh", {"refresh_token": "x", "extra": 1}),
        ("/api/v1/auth/logout", {"refresh_token": "x", "extra": 1}),
        ("/api/v1/auth/verify-email", {"token": "x", "extra": 1}),
        ("/api/v1/auth/password-reset", {"email": "a@example.com", "extra": 1}),
        ("/api/v1/auth/password-reset/confirm", {"token": "x", "new_password": PASSWORD, "x": 1}),
    ]:
        response = await client.post(path, json=payload)
        assert response.status_code == 422, path


async def test_registration_stores_a_bcrypt_hash_and_writes_events(
    client: httpx.AsyncClient, auth_database: str
) -> None:
    user = await register(client)
    engine = create_async_engine(auth_database)
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT password_hash FROM users WHERE id = :id"), {"id": user["id"]}
            )
        ).scalar_one()
    await engine.dispose()
    assert bcrypt.checkpw(PASSWORD.encode(), stored.encode())
    events = await outbox_events(auth_database, user["id"])
    assert [e["type"] for e in events] == ["user.registered", "user.verification_requested"]
    registered = events[0]
    assert registered["producer"] == "auth"
    assert registered["data"] == {
        "user_id": user["id"],
        "username": user["username"],
        "display_name": user["display_name"],
        "email": user["email"],
    }
    # The verification token and the address travel sealed, for email_service alone.
    assert set(events[1]["data"]) == {"user_id", "username", "sealed"}
    opened = unsealed(events[1]["data"]["sealed"])
    assert opened["email"] == user["email"] and len(opened["token"]) >= 40
    assert opened["token"] not in str(events[1]) and user["email"] not in str(events[1])


async def test_bcrypt_cost_defaults_to_12() -> None:
    assert AuthSettings.model_fields["bcrypt_rounds"].default == 12
    hashed = await PasswordHasher(12).hash(PASSWORD)
    assert hashed.startswith("$2b$12$")
