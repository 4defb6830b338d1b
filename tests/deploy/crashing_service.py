"""A service built like the real ones (common.create_app, common.server), with a route that
crashes: ``python -m tests.deploy.crashing_service PORT``."""

from __future__ import annotations

import sys

from fastapi import APIRouter, FastAPI

from common.app import create_app
from common.server import run_http
from common.settings import ServiceSettings


def build() -> FastAPI:
    router = APIRouter()

    @router.get("/api/v1/posts/crash")
    async def crash() -> None:
        raise RuntimeError("a bug")

    @router.post("/api/v1/posts", status_code=201)
    async def write(body: dict[str, int]) -> dict[str, int]:
        return {"n": body["n"]}

    return create_app(
        name="crash-test", settings=ServiceSettings(environment="test"), routers=[router]
    )


if __name__ == "__main__":
    run_http(build(), host="127.0.0.1", port=int(sys.argv[1]))
