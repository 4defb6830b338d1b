"""The public signing keys, for every service that verifies access tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

__all__ = ["router"]

router = APIRouter(tags=["keys"])


@router.get("/.well-known/jwks.json")
async def jwks(request: Request, response: Response) -> dict[str, Any]:
    # Short cache: verifiers refetch on an unknown kid anyway, so rotation is not held up.
    response.headers["Cache-Control"] = "public, max-age=300"
    keys: dict[str, Any] = request.app.state.keys.jwks()
    return keys
