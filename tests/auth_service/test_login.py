"""Login: by username or email, one generic 401, flat timing, the OAuth2 form for /docs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import httpx

from auth_service.app import create_app
from auth_service.settings import AuthSettings
from tests.auth_service.conftest import PASSWORD, bearer, register, running, unique


async def test_login_by_username_or_email_any_case(client: httpx.AsyncClient) -> None:
    user = await register(client)
    for login in (user["username"], user["username"].upper(), user["email"].upper()):
        response = await client.post(
            "/api/v1/auth/login", json={"login": login, "password": PASSWORD}
        )
        assert response.status_code == 200, login
        assert response.headers["cache-control"] == "no-store"
        assert (await client.get("/api/v1/me", headers=bearer(response.json()))).status_code == 200


async def test_one_generic_401_whatever_was_wrong(client: httpx.AsyncClient) -> None:
    user = await register(client)
    attempts = [
        {"login": user["username"], "password": "wrong password"},
        {"login": unique(), "password": PASSWORD},
        {"login": f"{unique()}@example.com", "password": PASSWORD},
        {"login": user["username"], "password": "x" * 100},  # over bcrypt's 72 bytes
    ]
    bodies = []
    for attempt in attempts:
        response = await client.post("/api/v1/auth/login", json=attempt)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        bodies.append(response.json())
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["detail"] == "Invalid credentials"


async def test_timing_does_not_reveal_whether_the_account_exists(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    # A cost high enough that one bcrypt run dominates the request time.
    app = create_app(auth_settings(bcrypt_rounds=10))
    async with running(app) as client:
        user = await register(client)

        async def seconds(login: str) -> float:
            start = time.perf_counter()
            response = await client.post(
                "/api/v1/auth/login", json={"login": login, "password": "wrong password"}
            )
            assert response.status_code == 401
            return time.perf_counter() - start

        # Interleaved, so a change in the machine's load (other work on a shared CI host)
        # weighs on both sides alike instead of skewing the ratio.
        samples: dict[str, list[float]] = {"existing": [], "missing": []}
        for _ in range(7):
            samples["existing"].append(await seconds(user["username"]))
            samples["missing"].append(await seconds(unique()))
        existing = statistics.median(samples["existing"])
        missing = statistics.median(samples["missing"])
        # Without the dummy-hash verification the missing account answers ~50x faster.
        assert 0.4 < missing / existing < 2.5, (existing, missing)


async def test_oauth2_password_form_for_docs(client: httpx.AsyncClient) -> None:
    user = await register(client)
    response = await client.post(
        "/api/v1/auth/token",
        data={"username": user["username"], "password": PASSWORD, "grant_type": "password"},
    )
    assert response.status_code == 200
    assert (await client.get("/api/v1/me", headers=bearer(response.json()))).status_code == 200
    wrong = await client.post(
        "/api/v1/auth/token", data={"username": user["username"], "password": "nope nope"}
    )
    assert wrong.status_code == 401
    schema = (await client.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    flows = [s["flows"]["password"]["tokenUrl"] for s in schemes.values() if s["type"] == "oauth2"]
    assert flows == ["/api/v1/auth/token"]
