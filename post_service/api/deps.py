"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from common.db import SessionDep
from common.text import StorableText
from post_service.service.limits import PostLimits
from post_service.service.posts import PostService
from post_service.service.write_marks import WriteMarks

__all__ = ["IdempotencyKey", "LimitsDep", "PostServiceDep", "WriteMarksDep"]


async def get_post_service(session: SessionDep) -> PostService:
    return PostService(session)


PostServiceDep = Annotated[PostService, Depends(get_post_service)]


async def get_limits(request: Request) -> PostLimits:
    limits: PostLimits = request.app.state.limits
    return limits


LimitsDep = Annotated[PostLimits, Depends(get_limits)]


async def get_write_marks(request: Request) -> WriteMarks:
    marks: WriteMarks = request.app.state.write_marks
    return marks


WriteMarksDep = Annotated[WriteMarks, Depends(get_write_marks)]

IdempotencyKey = Annotated[
    StorableText | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Same key, same user, within 24 h: the same resource again.",
    ),
]
