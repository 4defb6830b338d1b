"""Internal read API for feed_service (docs/services.md); not routed by the gateway."""

from __future__ import annotations

from fastapi import APIRouter

from common.internal import InternalCaller
from post_service.api.deps import PostServiceDep
from post_service.schemas import (
    BatchRequest,
    MentioningRequest,
    PostItems,
    RecentItems,
    RecentRequest,
)

__all__ = ["router"]

router = APIRouter(prefix="/internal/v1", tags=["internal"], dependencies=[InternalCaller])


@router.post("/posts/batch", summary="Posts by id (unknown or deleted ids are omitted)")
async def posts_batch(body: BatchRequest, posts: PostServiceDep) -> PostItems:
    return PostItems(items=await posts.batch(body.ids, body.viewer_id))


@router.post("/posts/recent", summary="Recent post ids of some authors, newest first")
async def posts_recent(body: RecentRequest, posts: PostServiceDep) -> RecentItems:
    return RecentItems(
        items=await posts.recent(body.author_ids, body.limit_per_author, body.before)
    )


@router.post("/posts/mentioning", summary="Recent post ids that mention a user, newest first")
async def posts_mentioning(body: MentioningRequest, posts: PostServiceDep) -> RecentItems:
    return RecentItems(items=await posts.mentioning(body.user_id, body.limit))
