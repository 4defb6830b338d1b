"""Rate limits on Redis answer 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from auth_service.app import create_app
from auth_service.settings import AuthSettings
from tests.auth_service.conftest import (
    PASSWORD,
    bearer,
    login,
    random_ip,
    register,
    running,
    unique,
)


def assert_429(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["content-type"] == "application/problem+json"


async def test_login_is_limited_per_account(auth_settings: Callable[..., AuthSettings]) -> None:
    app = create_app(auth_settings(rate_login_account="3/minute"))
    async with running(app) as client:
        user = await register(client)
        for _ in range(3):
            r = await client.post(
                "/api/v1/auth/login", json={"login": user["username"], "password": "bad password"}
            )
            assert r.status_code == 401
        # Same account from anywhere, any spelling: limited, even with the right password.
        transport = httpx.ASGITransport(app=app, client=(random_ip(), 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as elsewhere:
            r = await elsewhere.post(
                "/api/v1/auth/login", json={"login": user["username"].upper(), "password": PASSWORD}
            )
            assert_429(r)
        # Another account is not affected.
        other = await register(client)
        await login(client, other["username"])


async def test_login_is_limited_per_ip(auth_settings: Callable[..., AuthSettings]) -> None:
    app = create_app(auth_settings(rate_login_ip="3/minute"))
    async with running(app) as client:
        for _ in range(3):
            r = await client.post(
                "/api/v1/auth/login", json={"login": unique(), "password": "whatever1"}
            )
            assert r.status_code == 401
        r = await client.post(
            "/api/v1/auth/login", json={"login": unique(), "password": "whatever1"}
        )
        assert_429(r)


async def test_registration_is_limited_per_ip(auth_settings: Callable[..., AuthSettings]) -> None:
    app = create_app(auth_settings(rate_register_ip="2/minute"))
    async with running(app) as client:
        await register(client)
        await register(client)
        name = unique()
        r = await client.post(
            "/api/v1/auth/register",
            json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
        )
        assert_429(r)


async def test_password_reset_is_limited_per_address(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    app = create_app(auth_settings(rate_password_reset="2/minute"))
    async with running(app) as client:
        address = f"{unique()}@example.com"  # unknown addresses count too: no enumeration
        for _ in range(2):
            r = await client.post("/api/v1/auth/password-reset", json={"email": address})
            assert r.status_code == 202
        assert_429(
            await client.post("/api/v1/auth/password-reset", json={"email": address.upper()})
        )
        other = await client.post(
            "/api/v1/auth/password-reset", json={"email": f"{unique()}@example.com"}
        )
        assert other.status_code == 202


async def test_resend_verification_is_limited_per_address(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    app = create_app(auth_settings(rate_resend_verification="1/minute"))
    async with running(app) as client:
        user = await register(client)
        tokens = await login(client, user["username"])
        r = await client.post("/api/v1/auth/resend-verification", headers=bearer(tokens))
        assert r.status_code == 202
        assert_429(await client.post("/api/v1/auth/resend-verification", headers=bearer(tokens)))
