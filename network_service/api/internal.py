"""Internal read APIs for rebuilding caches (docs/services.md; not routed by the gateway)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from common.internal import InternalCaller
from common.pagination import MAX_CURSOR_LENGTH, Cursor, CursorId, decode_cursor, make_page
from network_service.api.deps import FollowServiceDep, UserIdPath
from network_service.schemas import FolloweeIds, FollowerCount, FollowerIds

__all__ = ["MAX_FOLLOWER_PAGE", "router"]

router = APIRouter(prefix="/internal/v1", tags=["internal"], dependencies=[InternalCaller])

MAX_FOLLOWER_PAGE = 10_000
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"description": "Unknown user"}
}


class AfterIdCursor(Cursor):
    a: CursorId


def _after_id(cursor: str | None) -> str | None:
    return None if cursor is None else decode_cursor(cursor, AfterIdCursor).a


@router.get(
    "/users/{user_id}/followers",
    summary="Follower ids in id order, up to 10000 per page",
    responses=_NOT_FOUND,
)
async def follower_ids(
    user_id: UserIdPath,
    service: FollowServiceDep,
    limit: Annotated[int, Query(ge=1, le=MAX_FOLLOWER_PAGE)] = 1000,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)] = None,
) -> FollowerIds:
    ids = await service.follower_ids(user_id, limit=limit + 1, after_id=_after_id(cursor))
    page = make_page(ids, limit, lambda last: {"a": last})
    return FollowerIds(items=page.items, next_cursor=page.next_cursor)


@router.get(
    "/users/{user_id}/followees", summary="Every id this user follows", responses=_NOT_FOUND
)
async def followee_ids(user_id: UserIdPath, service: FollowServiceDep) -> FolloweeIds:
    return FolloweeIds(items=await service.followee_ids(user_id))


@router.get("/users/{user_id}/follower-count", summary="Number of followers", responses=_NOT_FOUND)
async def follower_count(user_id: UserIdPath, service: FollowServiceDep) -> FollowerCount:
    return FollowerCount(count=await service.follower_count(user_id))
