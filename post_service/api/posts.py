"""Public endpoints: posts, likes, comments, search (api.md, post_service section)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from common.errors import Unprocessable, problem_responses
from common.pagination import Page, PageDep
from common.ratelimit import ClientIP
from common.security import CurrentUser, OptionalUser
from common.text import StorableText
from post_service.api.deps import IdempotencyKey, LimitsDep, PostServiceDep, WriteMarksDep
from post_service.schemas import Comment, CommentCreate, Post, PostCreate, PostUpdate, UserSummary
from post_service.service.cursors import RankCursor, TimeCursor

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["posts"])

PostId = Annotated[StorableText, Path(min_length=1, max_length=64)]
CommentId = Annotated[StorableText, Path(min_length=1, max_length=64)]
UserId = Annotated[StorableText, Path(min_length=1, max_length=64)]


@router.post(
    "/posts",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 404, 422, 429),
    summary="Create a post",
)
async def create_post(
    body: PostCreate,
    user: CurrentUser,
    posts: PostServiceDep,
    limits: LimitsDep,
    marks: WriteMarksDep,
    ip: ClientIP,
    idempotency_key: IdempotencyKey = None,
) -> Post:
    await limits.post(user.sub, ip)
    post = await posts.create_post(user, body, idempotency_key)
    # Committed first: a reader that sees the mark asks for posts that must then be there.
    await posts.commit()
    await marks.post_created(user.sub, post.created_at)
    return post


@router.get("/posts", responses=problem_responses(401, 422), summary="Search posts or list by tag")
async def search_posts(
    viewer: OptionalUser,
    posts: PostServiceDep,
    page: PageDep,
    q: Annotated[
        StorableText | None,
        Query(max_length=500, description="Full-text search; best match first"),
    ] = None,
    tag: Annotated[
        StorableText | None,
        Query(max_length=101, description="Posts with this hashtag, newest first"),
    ] = None,
) -> Page[Post]:
    if q is not None:
        if not q.strip():
            raise Unprocessable(
                "q must not be empty", errors=[{"loc": ["query", "q"], "msg": "Empty search"}]
            )
        return await posts.search(q, tag, viewer, page.limit, page.after(RankCursor))
    if tag is not None and tag.strip().removeprefix("#"):
        return await posts.by_tag(tag, viewer, page.limit, page.after(TimeCursor))
    raise Unprocessable(
        "Give a non-empty q (search) or tag",
        errors=[{"loc": ["query", "q"], "msg": "q or tag is required"}],
    )


@router.get("/posts/{post_id}", responses=problem_responses(401, 404), summary="Get a post")
async def get_post(post_id: PostId, viewer: OptionalUser, posts: PostServiceDep) -> Post:
    return await posts.get_post(post_id, viewer)


@router.patch(
    "/posts/{post_id}", responses=problem_responses(401, 403, 404, 422), summary="Edit a post"
)
async def update_post(
    post_id: PostId, body: PostUpdate, user: CurrentUser, posts: PostServiceDep
) -> Post:
    return await posts.update_post(user, post_id, body)


@router.delete(
    "/posts/{post_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
    summary="Delete a post",
)
async def delete_post(post_id: PostId, user: CurrentUser, posts: PostServiceDep) -> Response:
    await posts.delete_post(user, post_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/users/{user_id}/posts",
    responses=problem_responses(401, 404, 422),
    summary="A user's posts, newest first",
)
async def user_timeline(
    user_id: UserId, viewer: OptionalUser, posts: PostServiceDep, page: PageDep
) -> Page[Post]:
    return await posts.timeline(user_id, viewer, page.limit, page.after(TimeCursor))


@router.put(
    "/posts/{post_id}/like",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404, 429),
    summary="Like a post (idempotent)",
)
async def like_post(
    post_id: PostId, user: CurrentUser, posts: PostServiceDep, limits: LimitsDep, ip: ClientIP
) -> Response:
    await limits.like(user.sub, ip)
    await posts.like(user, post_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/posts/{post_id}/like",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 429),
    summary="Remove a like (idempotent)",
)
async def unlike_post(
    post_id: PostId, user: CurrentUser, posts: PostServiceDep, limits: LimitsDep, ip: ClientIP
) -> Response:
    await limits.like(user.sub, ip)
    await posts.unlike(user, post_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/posts/{post_id}/likes",
    responses=problem_responses(404, 422),
    summary="Who liked a post, most recent first",
)
async def list_likes(post_id: PostId, posts: PostServiceDep, page: PageDep) -> Page[UserSummary]:
    return await posts.likers(post_id, page.limit, page.after(TimeCursor))


@router.get(
    "/posts/{post_id}/comments",
    responses=problem_responses(404, 422),
    summary="Comments on a post, oldest first",
)
async def list_comments(post_id: PostId, posts: PostServiceDep, page: PageDep) -> Page[Comment]:
    return await posts.list_comments(post_id, page.limit, page.after(TimeCursor))


@router.post(
    "/posts/{post_id}/comments",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 404, 422, 429),
    summary="Comment on a post",
)
async def create_comment(
    post_id: PostId,
    body: CommentCreate,
    user: CurrentUser,
    posts: PostServiceDep,
    limits: LimitsDep,
    ip: ClientIP,
    idempotency_key: IdempotencyKey = None,
) -> Comment:
    await limits.comment(user.sub, ip)
    return await posts.create_comment(user, post_id, body, idempotency_key)


@router.delete(
    "/comments/{comment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
    summary="Delete a comment (its author or the post's author)",
)
async def delete_comment(
    comment_id: CommentId, user: CurrentUser, posts: PostServiceDep
) -> Response:
    await posts.delete_comment(user, comment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
