"""A database that is down gives 503 with Retry-After, never 500."""

from __future__ import annotations

import httpx
from asgi_lifespan import LifespanManager

from post_service.app import create_app
from tests.post_service.conftest import make_settings
from tests.support.jwt import TokenFactory
from tests.support.server import free_port


async def test_database_down_gives_503(tokens: TokenFactory, redis_url: str) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/post"
    app = create_app(make_settings(url, redis_url))
    app.state.token_verifier = tokens.verifier()
    token = tokens.mint("u-1", "alice")
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://post.test"
        ) as client,
    ):
        for method, path, body in (
            ("GET", "/api/v1/posts/some-id", None),
            ("POST", "/api/v1/posts", {"content": "hello"}),
            ("GET", "/api/v1/posts?q=hello", None),
        ):
            r = await client.request(
                method, path, json=body, headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 503, (method, path, r.text)
            assert "retry-after" in r.headers
            assert r.headers["content-type"].startswith("application/problem+json")
            assert "127.0.0.1" not in r.text
        ready = await client.get("/readyz")
        assert ready.status_code == 503
