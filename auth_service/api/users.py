"""/api/v1/me and /api/v1/users: the user's own account and public profiles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from auth_service.api.deps import CurrentUser, UserServiceDep
from auth_service.schemas import DeleteAccount, ProfileUpdate, UserPrivate, UserPublic
from common.pagination import Cursor, CursorId, Page, PageDep, make_page
from common.text import StorableText

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["users"])


class IdCursor(Cursor):
    id: CursorId


@router.get("/me", response_model=UserPrivate)
async def get_me(claims: CurrentUser, users: UserServiceDep) -> UserPrivate:
    return UserPrivate.model_validate(await users.get(claims.sub))


@router.patch("/me", response_model=UserPrivate)
async def update_me(body: ProfileUpdate, claims: CurrentUser, users: UserServiceDep) -> UserPrivate:
    return UserPrivate.model_validate(await users.update_profile(claims.sub, body))


@router.delete("/me", status_code=status.HTTP_202_ACCEPTED)
async def delete_me(body: DeleteAccount, claims: CurrentUser, users: UserServiceDep) -> None:
    """Deletes the account; every other service removes its data on ``user.deleted``."""
    await users.delete_account(claims.sub, body.password)


@router.get("/users", response_model=Page[UserPublic])
async def search_users(
    users: UserServiceDep,
    page: PageDep,
    q: Annotated[StorableText, Query(min_length=1, max_length=100)],
) -> Page[UserPublic]:
    """Users whose username starts with ``q`` or whose display name has words starting so."""
    after = page.after(IdCursor)
    rows = await users.search(
        q, limit=page.limit + 1, before_id=after.id if after is not None else None
    )
    items = [UserPublic.model_validate(row) for row in rows]
    return make_page(items, page.limit, lambda user: {"id": user.id})


@router.get("/users/by-username/{username}", response_model=UserPublic)
async def get_user_by_username(
    username: Annotated[StorableText, Path(max_length=30)], users: UserServiceDep
) -> UserPublic:
    return UserPublic.model_validate(await users.get_by_username(username))


@router.get("/users/{user_id}", response_model=UserPublic)
async def get_user(
    user_id: Annotated[StorableText, Path(max_length=36)], users: UserServiceDep
) -> UserPublic:
    return UserPublic.model_validate(await users.get(user_id))
