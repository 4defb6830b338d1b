"""Operations endpoints, and a dependency that is down gives 503, never 500."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from auth_service.app import create_app
from auth_service.settings import AuthSettings
from tests.auth_service.conftest import PASSWORD, running, unique
from tests.support.server import free_port


async def test_health_readiness_metrics_docs(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200 and "http_request" in metrics.text
    # The alert rules' gauges (docs/operations.md, "Alerts"): /readyz passed, outbox empty.
    assert "murmur_ready 1.0" in metrics.text
    # Exported; its value depends on what earlier tests left in the outbox (this client runs no
    # relay), so the values are tested in tests/common/test_metrics_exporters.py.
    assert re.search(r"^murmur_outbox_oldest_unpublished_age_seconds [0-9.]+$", metrics.text, re.M)
    assert (await client.get("/docs")).status_code == 200
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/verify-email",
        "/api/v1/auth/resend-verification",
        "/api/v1/auth/password-reset",
        "/api/v1/auth/password-reset/confirm",
        "/.well-known/jwks.json",
        "/api/v1/me",
        "/api/v1/users",
        "/api/v1/users/{user_id}",
        "/api/v1/users/by-username/{username}",
    ):
        assert path in paths, path


async def test_redis_down_gives_503_with_retry_after(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    app = create_app(auth_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with running(app) as client:
        name = unique()
        response = await client.post(
            "/api/v1/auth/register",
            json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
        )
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["content-type"] == "application/problem+json"
        ready = await client.get("/readyz")
        assert ready.status_code == 503


async def test_postgres_down_gives_503(auth_settings: Callable[..., AuthSettings]) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    app = create_app(auth_settings(database_url=url))
    async with running(app) as client:
        response = await client.get("/api/v1/users/by-username/someone")
        assert response.status_code == 503
        assert "127.0.0.1" not in response.text and "asyncpg" not in response.text
