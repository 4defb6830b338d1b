"""email_service's HTTP surface under crafted input: no answer is a 5xx.

It has no client API: its OpenAPI document has no operations for schemathesis to fuzz (the
operations endpoints are left out of it), so those are probed directly with crafted input.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from asgi_lifespan import LifespanManager

from email_service.app import create_app
from email_service.settings import EmailSettings
from tests.support.fuzz import CRAFTED_STRINGS, fuzz_service
from tests.support.server import serve


async def test_no_server_errors(
    email_settings: Callable[..., EmailSettings], make_vhost: Callable[[str], Awaitable[str]]
) -> None:
    app = create_app(email_settings(amqp_url=await make_vhost("email-fuzz")))
    async with LifespanManager(app, startup_timeout=60), serve(app) as url:
        report = await fuzz_service(app.openapi(), url, token=None)
        assert report.server_errors == []
        async with httpx.AsyncClient(base_url=url) as client:
            for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/nope"):
                for value in CRAFTED_STRINGS:
                    if "\ud800" in value:
                        continue  # a URL cannot carry a lone surrogate
                    response = await client.get(
                        path,
                        params={"q": value},
                        headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."},
                    )
                    assert response.status_code < 500, (path, value, response.text)
