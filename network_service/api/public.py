"""Public follow-graph endpoints (api.md, "Follow graph")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from common.errors import problem_responses
from common.pagination import Cursor, CursorId, CursorInt, Page, PageDep, PageParams, make_page
from common.ratelimit import ClientIP
from common.security import CurrentUser, OptionalUser
from common.time import from_ms, to_ms
from network_service.api.deps import FollowServiceDep, LimitsDep, UserIdPath
from network_service.models import FollowEdge
from network_service.schemas import FollowListItem, Relationship, SuggestionItem, SuggestionList

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["follow graph"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"description": "Unknown user"}
}
_TOO_MANY = problem_responses(429)


class EdgeCursor(Cursor):
    """After (followed at in ms, user id); 64-bit bounded, as Neo4j integers are."""

    s: CursorInt
    i: CursorId


def _after(page: PageParams) -> tuple[int, str] | None:
    """The (since, id) keyset of a list cursor; 422 for a cursor this list did not make."""
    cursor = page.after(EdgeCursor)
    return None if cursor is None else (cursor.s, cursor.i)


def _edge_cursor(item: FollowListItem) -> dict[str, Any]:
    return {"s": to_ms(item.followed_at), "i": item.id}


def _page(edges: list[FollowEdge], limit: int) -> Page[FollowListItem]:
    items = [
        FollowListItem(
            id=edge.user.id,
            username=edge.user.username,
            display_name=edge.user.display_name,
            followed_at=from_ms(edge.since_ms),
        )
        for edge in edges
    ]
    return make_page(items, limit, _edge_cursor)


@router.put(
    "/me/following/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Follow a user (idempotent)",
    responses={
        **_NOT_FOUND,
        status.HTTP_422_UNPROCESSABLE_CONTENT: {"description": "Self-follow"},
        **_TOO_MANY,
    },
)
async def follow(
    user_id: UserIdPath, me: CurrentUser, service: FollowServiceDep, limits: LimitsDep, ip: ClientIP
) -> Response:
    # The request time orders this follow against other operations on the pair (FollowService).
    accepted_at = service.accept()
    await limits.follow(me.sub, ip)
    await service.follow(
        follower_id=me.sub,
        follower_username=me.username,
        followee_id=user_id,
        accepted_at=accepted_at,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/me/following/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Unfollow a user (idempotent)",
    responses=_TOO_MANY,
)
async def unfollow(
    user_id: UserIdPath, me: CurrentUser, service: FollowServiceDep, limits: LimitsDep, ip: ClientIP
) -> Response:
    accepted_at = service.accept()
    await limits.follow(me.sub, ip)
    await service.unfollow(follower_id=me.sub, followee_id=user_id, accepted_at=accepted_at)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/users/{user_id}/followers",
    summary="Who follows this user, newest follow first",
    responses=_NOT_FOUND,
)
async def followers(
    user_id: UserIdPath, page: PageDep, service: FollowServiceDep
) -> Page[FollowListItem]:
    edges = await service.followers(user_id, limit=page.limit + 1, after=_after(page))
    return _page(edges, page.limit)


@router.get(
    "/users/{user_id}/following",
    summary="Whom this user follows, newest follow first",
    responses=_NOT_FOUND,
)
async def following(
    user_id: UserIdPath, page: PageDep, service: FollowServiceDep
) -> Page[FollowListItem]:
    edges = await service.following(user_id, limit=page.limit + 1, after=_after(page))
    return _page(edges, page.limit)


@router.get(
    "/users/{user_id}/relationship",
    summary="Follow counts, and how this user relates to the caller",
    responses=_NOT_FOUND,
)
async def relationship(
    user_id: UserIdPath, viewer: OptionalUser, service: FollowServiceDep
) -> Relationship:
    counts = await service.relationship(user_id, viewer_id=viewer.sub if viewer else None)
    return Relationship(
        followers_count=counts.followers_count,
        following_count=counts.following_count,
        followed_by_me=counts.followed_by_me,
        follows_me=counts.follows_me,
    )


@router.get(
    "/me/suggestions",
    summary="People followed by those you follow, most mutual connections first",
)
async def suggestions(
    me: CurrentUser,
    service: FollowServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SuggestionList:
    found = await service.suggestions(me.sub, limit=limit)
    return SuggestionList(
        items=[
            SuggestionItem(
                id=s.user.id,
                username=s.user.username,
                display_name=s.user.display_name,
                mutual_count=s.mutual_count,
            )
            for s in found
        ]
    )
