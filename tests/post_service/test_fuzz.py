"""post_service's whole OpenAPI fuzzed (tests/support/fuzz.py): no answer is a 5xx."""

from __future__ import annotations

import httpx
from asgi_lifespan import LifespanManager

from post_service.app import create_app
from tests.post_service.conftest import PostHarness, make_settings
from tests.support.fuzz import fuzz_service
from tests.support.jwt import TokenFactory
from tests.support.server import serve


async def test_no_server_errors(post_database: str, redis_url: str, tokens: TokenFactory) -> None:
    app = create_app(make_settings(post_database, redis_url))
    app.state.token_verifier = tokens.verifier()
    async with LifespanManager(app, startup_timeout=60), serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            harness = PostHarness(app, client, tokens)
            # A registered author with a post, so lookups and writes get past 401 and 404.
            alice = await harness.registered("fuzzer")
            await harness.post(alice, "#fuzz hello @fuzzer")
        report = await fuzz_service(app.openapi(), url, token=alice.token)
    print(f"post_service: {report.requests} requests in {report.seconds:.1f} s")
    assert report.requests > 100
    assert report.server_errors == [], "\n".join(report.server_errors)
