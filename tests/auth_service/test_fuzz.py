"""auth_service's whole OpenAPI fuzzed (tests/support/fuzz.py): no answer is a 5xx."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from asgi_lifespan import LifespanManager

from auth_service.app import create_app
from auth_service.settings import AuthSettings
from tests.auth_service.conftest import login, register
from tests.support.fuzz import fuzz_service
from tests.support.server import serve


async def test_no_server_errors(auth_settings: Callable[..., AuthSettings]) -> None:
    app = create_app(auth_settings())
    async with LifespanManager(app, startup_timeout=60), serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            # A real registered user's token, so authenticated operations run past the 401.
            user = await register(client)
            token = (await login(client, user["username"]))["access_token"]
        report = await fuzz_service(app.openapi(), url, token=token)
    print(f"auth_service: {report.requests} requests in {report.seconds:.1f} s")
    assert report.requests > 100
    assert report.server_errors == [], "\n".join(report.server_errors)
