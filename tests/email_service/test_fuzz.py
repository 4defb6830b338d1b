"""email_service's OpenAPI (its operations endpoints) fuzzed: no answer is a 5xx."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgi_lifespan import LifespanManager

from email_service.app import create_app
from email_service.settings import EmailSettings
from tests.support.fuzz import fuzz_service
from tests.support.server import serve


async def test_no_server_errors(
    email_settings: Callable[..., EmailSettings], make_vhost: Callable[[str], Awaitable[str]]
) -> None:
    app = create_app(email_settings(amqp_url=await make_vhost("email-fuzz")))
    async with LifespanManager(app, startup_timeout=60), serve(app) as url:
        # No client endpoint and no authentication: the operations endpoints only.
        report = await fuzz_service(app.openapi(), url, token=None)
    print(f"email_service: {report.requests} requests in {report.seconds:.1f} s")
    assert report.requests > 3
    assert report.server_errors == [], "\n".join(report.server_errors)
