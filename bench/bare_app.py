"""The layered baselines and the fan-out-on-read endpoint, one layer per process.

``python -m bench.bare_app --layer L --port P`` serves ``GET /api/v1/me/feed`` (the home
feed's own path, so the benchmark's gateway routes it through the very location the real home
feed uses) with one more layer than the previous step:

- ``bare``: FastAPI alone, a fixed feed-sized page;
- ``middleware``: the services' app (``common.app.create_app``: security headers, correlation
  id, telemetry, error and body-size middleware, problem handlers) around the same page;
- ``jwt``: + verifying the bearer token as every service does (``CurrentUser``, keys from
  auth_service's JWKS);
- ``redis``: + one Redis call, ZREVRANGE of the reader's feed key in feed_service's database;
- ``pull``: fan-out on read instead of the page: the newest posts of everyone the reader
  follows, by one per-author LATERAL query in PostgreSQL, hydrated with the authors and
  answered through feed_service's response model (``PostPage``).

Each layer runs under ``common.server.run_http``, as the services do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
import redis.asyncio as aioredis
import typer
from fastapi import APIRouter, FastAPI, Query, Request
from pydantic_settings import SettingsConfigDict

from common.app import Role, Wiring, create_app
from common.security import CurrentUser
from common.settings import ServiceSettings
from feed_service.repository import keys
from feed_service.schemas import PostPage

__all__ = ["LAYERS", "PULL_QUERY", "BenchAppSettings", "build_app"]

Layer = Literal["bare", "middleware", "jwt", "redis", "pull"]
LAYERS: tuple[Layer, ...] = ("bare", "middleware", "jwt", "redis", "pull")
PATH = "/api/v1/me/feed"
Limit = Annotated[int, Query(ge=1, le=100)]

# Ten posts of the public shape: the size of the home-feed page the workload reads.
_PAGE: dict[str, Any] = {
    "items": [
        {
            "id": f"01900000-0000-7000-8000-00000000{n:04d}",
            "author": {
                "id": "01900000-0000-7000-8000-000000000001",
                "username": "u",
                "display_name": "U",
            },
            "content": "x" * 80,
            "created_at": "2026-01-01T00:00:00.000Z",
            "edited_at": None,
            "reply_to_id": None,
            "hashtags": [],
            "mentions": [],
            "like_count": 0,
            "comment_count": 0,
            "liked_by_me": False,
        }
        for n in range(10)
    ],
    "next_cursor": None,
}

# Fan-out on read at its best: for each followee (and the reader) only its newest `limit`
# posts, each an index range scan of posts (author_id, created_at DESC), merged and cut to the
# page; the authors are joined for the page only.
PULL_QUERY = """
WITH page AS (
    SELECT p.id, p.author_id, p.content, p.created_at
    FROM (SELECT followee FROM follows WHERE follower = $1 UNION ALL SELECT $1) AS f
    CROSS JOIN LATERAL (
        SELECT id, author_id, content, created_at FROM posts
        WHERE author_id = f.followee
        ORDER BY created_at DESC
        LIMIT $2
    ) AS p
    ORDER BY p.created_at DESC
    LIMIT $2
)
SELECT page.id, page.author_id, u.username, u.display_name, page.content, page.created_at
FROM page JOIN users AS u ON u.id = page.author_id
ORDER BY page.created_at DESC
"""


class BenchAppSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BENCH_APP_", extra="ignore", env_file=None)

    layer: Layer = "bare"
    log_level: str = "WARNING"
    run_workers: bool = False
    redis_url: str = "redis://127.0.0.1:6379/3"
    pull_dsn: str = ""
    pull_pool_size: int = 10


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _post(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "author": {
            "id": str(row["author_id"]),
            "username": row["username"],
            "display_name": row["display_name"],
        },
        "content": row["content"],
        "created_at": _iso(row["created_at"]),
        "edited_at": None,
        "reply_to_id": None,
        "hashtags": [],
        "mentions": [],
        "like_count": 0,
        "comment_count": 0,
        "liked_by_me": False,
    }


def _router(layer: Layer) -> APIRouter:
    router = APIRouter()

    if layer == "middleware":

        @router.get(PATH)
        async def page_only(limit: Limit = 10) -> dict[str, Any]:
            return _PAGE

    elif layer == "jwt":

        @router.get(PATH)
        async def with_jwt(user: CurrentUser, limit: Limit = 10) -> dict[str, Any]:
            return _PAGE

    elif layer == "redis":

        @router.get(PATH)
        async def with_redis(
            request: Request, user: CurrentUser, limit: Limit = 10
        ) -> dict[str, Any]:
            redis: aioredis.Redis = request.app.state.redis
            await redis.zrevrange(keys.feed(user.sub), 0, limit - 1, withscores=True)
            return _PAGE

    else:

        @router.get(PATH, response_model=PostPage)
        async def pull(request: Request, user: CurrentUser, limit: Limit = 10) -> dict[str, Any]:
            pool: asyncpg.Pool = request.app.state.pull_pool
            rows = await pool.fetch(PULL_QUERY, user.sub, limit)
            return {"items": [_post(r) for r in rows], "next_cursor": None}

    return router


def build_app(settings: BenchAppSettings) -> FastAPI:
    layer = settings.layer
    if layer == "bare":
        bare = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        bare.state.settings = settings

        @bare.get(PATH)
        async def feed() -> dict[str, Any]:
            return _PAGE

        return bare

    @asynccontextmanager
    async def lifespan(settings: BenchAppSettings, role: Role) -> AsyncIterator[Wiring]:
        wiring = Wiring()
        redis: aioredis.Redis | None = None
        pool: asyncpg.Pool | None = None
        if layer == "redis":
            redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
            wiring.state["redis"] = redis
        if layer == "pull":
            pool = await asyncpg.create_pool(
                settings.pull_dsn, min_size=2, max_size=settings.pull_pool_size
            )
            wiring.state["pull_pool"] = pool
        try:
            yield wiring
        finally:
            if redis is not None:
                await redis.aclose()
            if pool is not None:
                await pool.close()

    # Token checks as every service has them (keys from auth_service's JWKS), from "jwt" on.
    return create_app(
        name="bench_layer",
        settings=settings,
        routers=[_router(layer)],
        lifespan=lifespan,
        verify_tokens=layer != "middleware",
    )


cli = typer.Typer(add_completion=False)


@cli.command()
def serve(layer: str = "bare", host: str = "127.0.0.1", port: int = 8099) -> None:
    """Serve one layer (its settings from ``BENCH_APP_*``)."""
    from common.server import run_http

    settings = BenchAppSettings(layer=layer)
    run_http(build_app(settings), host=host, port=port)


if __name__ == "__main__":
    cli()
