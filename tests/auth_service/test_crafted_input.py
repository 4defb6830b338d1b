"""Crafted input (NUL, lone surrogates, malformed tokens) is a 4xx problem, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.auth_service.conftest import PASSWORD, bearer, login, register

# "\ud800" must reach the app as JSON's escape: httpx's json= would refuse to encode it.
SURROGATE_JSON = '"a\\ud800b"'


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_malformed_token_is_401_on_me(client: httpx.AsyncClient) -> None:
    token = "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6MTIzfQ.e30.AAAA"
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("field", ["display_name", "bio"])
@pytest.mark.parametrize("bad", ["nul\x00byte", "\x00"])
async def test_nul_in_profile_is_422(client: httpx.AsyncClient, field: str, bad: str) -> None:
    tokens = await login(client, (await register(client))["username"])
    response = await client.patch("/api/v1/me", json={field: bad}, headers=bearer(tokens))
    assert_problem(response, 422)
    assert response.json()["errors"][0]["loc"] == ["body", field]


@pytest.mark.parametrize("field", ["display_name", "bio"])
async def test_surrogate_in_profile_is_422(client: httpx.AsyncClient, field: str) -> None:
    tokens = await login(client, (await register(client))["username"])
    response = await client.patch(
        "/api/v1/me",
        content=f'{{"{field}": {SURROGATE_JSON}}}',
        headers={**bearer(tokens), "Content-Type": "application/json"},
    )
    assert_problem(response, 422)


async def test_nul_in_register_display_name_is_422(client: httpx.AsyncClient) -> None:
    body = {
        "username": "nulname",
        "email": "nulname@example.com",
        "password": PASSWORD,
        "display_name": "a\x00b",
    }
    assert_problem(await client.post("/api/v1/auth/register", json=body), 422)


@pytest.mark.parametrize("field", ["login", "password"])
async def test_nul_in_login_is_422(client: httpx.AsyncClient, field: str) -> None:
    user = await register(client)
    body = {"login": user["username"], "password": PASSWORD, field: "x\x00y"}
    assert_problem(await client.post("/api/v1/auth/login", json=body), 422)


async def test_nul_in_user_search_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users", params={"q": "a\x00"})
    assert_problem(response, 422)
    assert response.json()["errors"][0]["loc"] == ["query", "q"]


@pytest.mark.parametrize("path", ["/api/v1/users/a%00b", "/api/v1/users/by-username/a%00b"])
async def test_nul_in_user_path_is_4xx(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code in (404, 422), response.text


@pytest.mark.parametrize("field", ["username", "password"])
async def test_nul_in_token_form_is_422(client: httpx.AsyncClient, field: str) -> None:
    user = await register(client)
    form = {"grant_type": "password", "username": user["username"], "password": PASSWORD}
    form[field] = "x\x00y"
    assert_problem(await client.post("/api/v1/auth/token", data=form), 422)
    del form[field]
    assert_problem(await client.post("/api/v1/auth/token", data=form), 422)
