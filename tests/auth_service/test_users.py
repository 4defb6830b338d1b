"""/api/v1/me, public profiles, search, deletion; and no response leaks secrets."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.auth_service.conftest import PASSWORD, bearer, login, outbox_events, register, unique


async def test_update_profile(client: httpx.AsyncClient, auth_database: str) -> None:
    user = await register(client)
    tokens = await login(client, user["username"])
    r = await client.patch(
        "/api/v1/me", json={"display_name": "  New Name ", "bio": "hello"}, headers=bearer(tokens)
    )
    assert r.status_code == 200
    assert r.json()["display_name"] == "New Name" and r.json()["bio"] == "hello"
    assert r.json()["email"] == user["email"]
    events = [
        e for e in await outbox_events(auth_database, user["id"]) if e["type"] == "user.updated"
    ]
    assert [e["data"] for e in events] == [
        {"user_id": user["id"], "username": user["username"], "display_name": "New Name"}
    ]
    for bad in (
        {"bio": "x" * 301},
        {"display_name": ""},
        {"username": "hacker"},
        {"email_verified": True},
    ):
        r = await client.patch("/api/v1/me", json=bad, headers=bearer(tokens))
        assert r.status_code == 422, bad
    assert (
        await client.patch("/api/v1/me", json={"bio": "x" * 300}, headers=bearer(tokens))
    ).status_code == 200
    assert (await client.patch("/api/v1/me", json={"bio": "hi"})).status_code == 401


async def test_public_profiles(client: httpx.AsyncClient) -> None:
    user = await register(client)
    by_id = await client.get(f"/api/v1/users/{user['id']}")
    assert by_id.status_code == 200
    assert set(by_id.json()) == {"id", "username", "display_name", "bio", "created_at"}
    by_name = await client.get(f"/api/v1/users/by-username/{user['username'].upper()}")
    assert by_name.status_code == 200 and by_name.json()["id"] == user["id"]
    assert (
        await client.get("/api/v1/users/0190a000-0000-7000-8000-000000000000")
    ).status_code == 404
    assert (await client.get(f"/api/v1/users/by-username/{unique()}")).status_code == 404


async def test_search_by_username_prefix_and_display_name_words(client: httpx.AsyncClient) -> None:
    tag = unique("s")
    prefixed = [await register(client, username=f"{tag}_{i}") for i in range(3)]
    named = await register(client, display_name=f"Grace {tag}word Hopper")
    r = await client.get("/api/v1/users", params={"q": tag})
    assert r.status_code == 200
    ids = [u["id"] for u in r.json()["items"]]
    assert set(ids) == {u["id"] for u in prefixed} | {named["id"]}
    assert all("email" not in u for u in r.json()["items"])
    # Newest first, and stable pagination.
    assert ids == sorted(ids, reverse=True)
    first = await client.get("/api/v1/users", params={"q": tag, "limit": 3})
    assert len(first.json()["items"]) == 3 and first.json()["next_cursor"]
    second = await client.get(
        "/api/v1/users", params={"q": tag, "limit": 3, "cursor": first.json()["next_cursor"]}
    )
    assert [u["id"] for u in first.json()["items"] + second.json()["items"]] == ids
    assert second.json()["next_cursor"] is None
    words = await client.get("/api/v1/users", params={"q": f"hopp {tag}wo"})
    assert [u["id"] for u in words.json()["items"]] == [named["id"]]
    # A LIKE wildcard in q is a literal character, not "anything".
    assert (await client.get("/api/v1/users", params={"q": "%"})).json()["items"] == []
    assert (
        await client.get("/api/v1/users", params={"q": tag, "cursor": "garbage!"})
    ).status_code == 422
    foreign = "eyJ4IjoxfQ"  # valid base64 JSON, but not one of this endpoint's cursors
    assert (
        await client.get("/api/v1/users", params={"q": tag, "cursor": foreign})
    ).status_code == 422
    assert (await client.get("/api/v1/users", params={"q": tag, "limit": 0})).status_code == 422
    assert (await client.get("/api/v1/users", params={"q": tag, "limit": 101})).status_code == 422
    assert (await client.get("/api/v1/users", params={"q": ""})).status_code == 422


async def test_delete_account(client: httpx.AsyncClient, auth_database: str) -> None:
    user = await register(client)
    tokens = await login(client, user["username"])
    wrong = await client.request(
        "DELETE", "/api/v1/me", json={"password": "not the password"}, headers=bearer(tokens)
    )
    assert wrong.status_code == 401
    assert (
        await client.request(
            "DELETE", "/api/v1/me", json={"password": PASSWORD, "x": 1}, headers=bearer(tokens)
        )
    ).status_code == 422
    done = await client.request(
        "DELETE", "/api/v1/me", json={"password": PASSWORD}, headers=bearer(tokens)
    )
    assert done.status_code == 202
    events = await outbox_events(auth_database, user["id"])
    assert events[-1]["type"] == "user.deleted" and events[-1]["data"] == {"user_id": user["id"]}
    assert (await client.get(f"/api/v1/users/{user['id']}")).status_code == 404
    # The deleted account's unexpired access token gets 401 on every authenticated endpoint.
    for method, path, body in (
        ("GET", "/api/v1/me", None),
        ("PATCH", "/api/v1/me", {"display_name": "ghost"}),
        ("DELETE", "/api/v1/me", {"password": PASSWORD}),
        ("POST", "/api/v1/auth/resend-verification", None),
    ):
        r = await client.request(method, path, json=body, headers=bearer(tokens))
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["detail"] == "This account has been deleted"
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401
    r = await client.post(
        "/api/v1/auth/login", json={"login": user["username"], "password": PASSWORD}
    )
    assert r.status_code == 401
    # The name and address are free again.
    await register(client, username=user["username"], email=user["email"])


async def test_no_response_leaks_a_hash_or_another_users_email(client: httpx.AsyncClient) -> None:
    alice = await register(client, display_name="Alice")
    bob = await register(client, display_name="Bob")
    tokens = await login(client, alice["username"])
    auth = bearer(tokens)
    responses: list[httpx.Response] = [
        await client.get("/api/v1/me", headers=auth),
        await client.patch("/api/v1/me", json={"bio": "hi"}, headers=auth),
        await client.get(f"/api/v1/users/{bob['id']}", headers=auth),
        await client.get(f"/api/v1/users/by-username/{bob['username']}", headers=auth),
        await client.get("/api/v1/users", params={"q": bob["username"]}, headers=auth),
        await client.get("/api/v1/users", params={"q": "Bob"}, headers=auth),
        await client.post(
            "/api/v1/auth/login", json={"login": bob["email"], "password": "wrong one"}
        ),
        await client.post("/api/v1/auth/password-reset", json={"email": bob["email"]}),
        await client.post(
            "/api/v1/auth/register",
            json={"username": unique(), "email": bob["email"], "password": PASSWORD},
        ),
        await client.get("/.well-known/jwks.json"),
    ]
    for response in responses:
        assert response.status_code < 500
        assert "$2b$" not in response.text, response.request.url
        assert "password_hash" not in response.text
        assert bob["email"] not in response.text, response.request.url
    me: dict[str, Any] = json.loads(responses[0].text)
    assert me["email"] == alice["email"]
