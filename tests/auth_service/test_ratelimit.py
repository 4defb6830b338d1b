"""Rate limits on Redis answer 429 with Retry-After (the scheme: docs/api-auth.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

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

WRONG = "bad password"


def assert_429(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["content-type"] == "application/problem+json"


@asynccontextmanager
async def client_at(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """Another client of the app already running (``running`` owns the lifespan)."""
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as client:
        yield client


async def attempt(client: httpx.AsyncClient, login_: str, password: str) -> int:
    r = await client.post("/api/v1/auth/login", json={"login": login_, "password": password})
    if r.status_code == 429:
        assert_429(r)
    return r.status_code


async def test_failures_lock_only_that_client_out_of_the_account_whatever_the_spelling(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    app = create_app(auth_settings(rate_login_account_client="3/minute"))
    async with running(app) as attacker:
        user = await register(attacker)
        for _ in range(3):
            assert await attempt(attacker, user["username"], WRONG) == 401
        # The email spells the same account: the same bucket, even with the right password.
        assert await attempt(attacker, user["email"].upper(), PASSWORD) == 429
        assert await attempt(attacker, user["username"], PASSWORD) == 429
        # The owner, elsewhere, is not locked out by someone else's failures.
        async with client_at(app, random_ip()) as owner:
            assert await attempt(owner, user["email"], PASSWORD) == 200
        # Another account from the locked-out client is not affected either.
        other = await register(attacker)
        await login(attacker, other["username"])


async def test_a_success_forgives_the_clients_own_failures(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    app = create_app(auth_settings(rate_login_account_client="3/minute"))
    async with running(app) as client:
        user = await register(client)
        for _ in range(2):
            assert await attempt(client, user["username"], WRONG) == 401
        assert await attempt(client, user["username"], PASSWORD) == 200
        for _ in range(2):
            assert await attempt(client, user["username"], WRONG) == 401
        assert await attempt(client, user["username"], PASSWORD) == 200


async def test_account_wide_limit_stops_many_clients_but_spares_known_ones(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    app = create_app(auth_settings(rate_login_account="3/minute"))
    async with running(app) as owner:
        user = await register(owner)
        # The owner's client signs in once (counted: it was not known yet) and becomes known.
        assert await attempt(owner, user["username"], PASSWORD) == 200
        # A guesser spread over fresh addresses spends the rest of the account-wide allowance.
        for expected in (401, 401, 429):
            async with client_at(app, random_ip()) as guesser:
                assert await attempt(guesser, user["email"], WRONG) == expected
        async with client_at(app, random_ip()) as newcomer:
            assert await attempt(newcomer, user["username"], PASSWORD) == 429
        # The client that signed in before still does.
        assert await attempt(owner, user["username"], PASSWORD) == 200


async def test_unknown_logins_are_limited_like_accounts(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    # No account behind the name must look the same as an account: 401 until the limit, then
    # 429, and another client is not affected.
    app = create_app(auth_settings(rate_login_account_client="2/minute"))
    async with running(app) as client:
        name = unique()
        for _ in range(2):
            assert await attempt(client, name, WRONG) == 401
        assert await attempt(client, name.upper(), WRONG) == 429
        async with client_at(app, random_ip()) as other:
            assert await attempt(other, name, WRONG) == 401


async def test_login_is_limited_per_ip(auth_settings: Callable[..., AuthSettings]) -> None:
    app = create_app(auth_settings(rate_login_ip="3/minute"))
    async with running(app) as client:
        for _ in range(3):
            assert await attempt(client, unique(), "whatever1") == 401
        assert await attempt(client, unique(), "whatever1") == 429


async def test_ipv6_clients_share_their_64(auth_settings: Callable[..., AuthSettings]) -> None:
    app = create_app(auth_settings(rate_login_ip="2/minute"))
    async with running(app, ip="2001:db8:1:2::1") as client:
        for _ in range(2):
            assert await attempt(client, unique(), "whatever1") == 401
        async with client_at(app, "2001:db8:1:2:ffff::9") as neighbour:
            assert await attempt(neighbour, unique(), "whatever1") == 429
        async with client_at(app, "2001:db8:1:3::1") as elsewhere:
            assert await attempt(elsewhere, unique(), "whatever1") == 401


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
        # Per address, whoever asks: the limit protects that mailbox.
        async with client_at(app, random_ip()) as other_client:
            assert_429(
                await other_client.post(
                    "/api/v1/auth/password-reset", json={"email": address.upper()}
                )
            )
        other = await client.post(
            "/api/v1/auth/password-reset", json={"email": f"{unique()}@example.com"}
        )
        assert other.status_code == 202


async def test_password_reset_is_limited_per_client(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    app = create_app(auth_settings(rate_password_reset_ip="2/minute"))
    async with running(app) as client:
        for _ in range(2):
            r = await client.post(
                "/api/v1/auth/password-reset", json={"email": f"{unique()}@example.com"}
            )
            assert r.status_code == 202
        assert_429(
            await client.post(
                "/api/v1/auth/password-reset", json={"email": f"{unique()}@example.com"}
            )
        )
        async with client_at(app, random_ip()) as other:
            r = await other.post(
                "/api/v1/auth/password-reset", json={"email": f"{unique()}@example.com"}
            )
            assert r.status_code == 202


async def test_resend_verification_is_limited_per_account(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    app = create_app(auth_settings(rate_resend_verification="1/minute"))
    async with running(app) as client:
        user = await register(client)
        tokens = await login(client, user["username"])
        r = await client.post("/api/v1/auth/resend-verification", headers=bearer(tokens))
        assert r.status_code == 202
        async with client_at(app, random_ip()) as elsewhere:
            assert_429(
                await elsewhere.post("/api/v1/auth/resend-verification", headers=bearer(tokens))
            )


async def test_resend_verification_is_limited_per_client(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    app = create_app(auth_settings(rate_resend_verification_ip="1/minute"))
    async with running(app) as client:
        first, second = await register(client), await register(client)
        tokens = [await login(client, u["username"]) for u in (first, second)]
        r = await client.post("/api/v1/auth/resend-verification", headers=bearer(tokens[0]))
        assert r.status_code == 202
        assert_429(await client.post("/api/v1/auth/resend-verification", headers=bearer(tokens[1])))
