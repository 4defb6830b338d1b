"""Email verification and password reset, driven by the tokens auth puts in its outbox."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.auth_service.conftest import (
    PASSWORD,
    bearer,
    latest_token,
    login,
    outbox_events,
    register,
    unique,
)
from tests.support.sealing import unsealed

NEW_PASSWORD = "a whole new password"


async def _me(client: httpx.AsyncClient, tokens: dict[str, str]) -> dict[str, object]:
    response = await client.get("/api/v1/me", headers=bearer(tokens))
    assert response.status_code == 200
    data: dict[str, object] = response.json()
    return data


async def test_verify_by_post(client: httpx.AsyncClient, auth_database: str) -> None:
    user = await register(client)
    tokens = await login(client, user["username"])
    token = await latest_token(auth_database, user["id"], "user.verification_requested")
    bad = await client.post("/api/v1/auth/verify-email", json={"token": "x" * 43})
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    ok = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert ok.status_code == 204
    assert (await _me(client, tokens))["email_verified"] is True
    # Retrying the same verification is harmless (idempotent), and a second event is not sent.
    again = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert again.status_code == 204
    types = [e["type"] for e in await outbox_events(auth_database, user["id"])]
    assert types.count("user.email_verified") == 1


async def test_verify_by_link_gives_html_pages(
    client: httpx.AsyncClient, auth_database: str
) -> None:
    user = await register(client)
    token = await latest_token(auth_database, user["id"], "user.verification_requested")
    bad = await client.get("/api/v1/auth/verify-email", params={"token": "nope"})
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("text/html")
    missing = await client.get("/api/v1/auth/verify-email")
    assert missing.status_code == 400
    good = await client.get("/api/v1/auth/verify-email", params={"token": token})
    assert good.status_code == 200
    assert good.headers["content-type"].startswith("text/html")
    assert "verified" in good.text and token not in good.text
    tokens = await login(client, user["username"])
    assert (await _me(client, tokens))["email_verified"] is True


async def test_expired_verification_token_is_400(
    client: httpx.AsyncClient, auth_database: str
) -> None:
    user = await register(client)
    token = await latest_token(auth_database, user["id"], "user.verification_requested")
    engine = create_async_engine(auth_database)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE one_time_tokens SET expires_at = now() - interval '1 second'"
                " WHERE user_id = :id"
            ),
            {"id": user["id"]},
        )
    await engine.dispose()
    response = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 400


async def test_resend_replaces_the_token(client: httpx.AsyncClient, auth_database: str) -> None:
    user = await register(client)
    tokens = await login(client, user["username"])
    first = await latest_token(auth_database, user["id"], "user.verification_requested")
    resend = await client.post("/api/v1/auth/resend-verification", headers=bearer(tokens))
    assert resend.status_code == 202
    second = await latest_token(auth_database, user["id"], "user.verification_requested")
    assert second != first
    assert (
        await client.post("/api/v1/auth/verify-email", json={"token": first})
    ).status_code == 400
    assert (
        await client.post("/api/v1/auth/verify-email", json={"token": second})
    ).status_code == 204
    # Once verified, resending sends nothing more.
    count = len(await outbox_events(auth_database, user["id"]))
    assert (
        await client.post("/api/v1/auth/resend-verification", headers=bearer(tokens))
    ).status_code == 202
    assert len(await outbox_events(auth_database, user["id"])) == count
    assert (await client.post("/api/v1/auth/resend-verification")).status_code == 401


async def test_password_reset_end_to_end(client: httpx.AsyncClient, auth_database: str) -> None:
    user = await register(client)
    session_a = await login(client, user["username"])
    session_b = await login(client, user["email"])

    # Unknown address: the same 202, and nothing is sent anywhere.
    unknown = await client.post(
        "/api/v1/auth/password-reset", json={"email": f"{unique()}@example.com"}
    )
    assert unknown.status_code == 202
    response = await client.post(
        "/api/v1/auth/password-reset", json={"email": user["email"].upper()}
    )
    assert response.status_code == 202
    events = await outbox_events(auth_database, user["id"])
    reset = [e for e in events if e["type"] == "user.password_reset_requested"]
    assert len(reset) == 1
    assert user["email"] not in str(reset[0])  # sealed for email_service
    opened = unsealed(reset[0]["data"]["sealed"])
    assert opened["email"] == user["email"]
    token = opened["token"]
    assert token not in str(reset[0])

    too_long = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "é" * 37}
    )
    assert too_long.status_code == 422
    wrong = await client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": "z" * 43, "new_password": NEW_PASSWORD},
    )
    assert wrong.status_code == 400
    done = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert done.status_code == 204

    # Every refresh token of the user is dead.
    for session in (session_a, session_b):
        r = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
        assert r.status_code == 401
    # Single use.
    replay = await client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": token, "new_password": "yet another one"},
    )
    assert replay.status_code == 400
    old = await client.post(
        "/api/v1/auth/login", json={"login": user["username"], "password": PASSWORD}
    )
    assert old.status_code == 401
    await login(client, user["username"], NEW_PASSWORD)


async def test_reset_link_page(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/v1/auth/password-reset/confirm", params={"token": "abc"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "abc" not in page.text
