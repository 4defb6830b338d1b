"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header

from common.db import SessionDep
from post_service.service.posts import PostService

__all__ = ["IdempotencyKey", "PostServiceDep", "problem_responses"]


def get_post_service(session: SessionDep) -> PostService:
    return PostService(session)


PostServiceDep = Annotated[PostService, Depends(get_post_service)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Same key, same user, within 24 h: the same resource again.",
    ),
]


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json errors an endpoint can answer."""
    descriptions = {
        401: "Missing or invalid access token",
        403: "Not allowed",
        404: "Not found",
        422: "Invalid input",
    }
    return {
        status: {
            "description": descriptions[status],
            "content": {"application/problem+json": {"schema": {"type": "object"}}},
        }
        for status in statuses
    }
