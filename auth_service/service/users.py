"""Profiles: the user's own account, public profiles and search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from auth_service import SERVICE_NAME
from auth_service.models import User
from auth_service.repository.users import UserRepository
from auth_service.schemas import ProfileUpdate
from auth_service.service.passwords import PasswordHasher
from common.errors import NotFound, Unauthorized
from common.events import UserDeleted, UserUpdated
from common.logging import get_logger
from common.outbox import emit
from common.time import utcnow

__all__ = ["UserService"]

log = get_logger(__name__)


@dataclass
class UserService:
    session: AsyncSession
    hasher: PasswordHasher

    @property
    def users(self) -> UserRepository:
        return UserRepository(self.session)

    async def get(self, user_id: str) -> User:
        user = await self.users.get(user_id)
        if user is None:
            raise NotFound("User not found")
        return user

    async def get_by_username(self, username: str) -> User:
        user = await self.users.get_by_username(username)
        if user is None:
            raise NotFound("User not found")
        return user

    async def update_profile(self, user_id: str, changes: ProfileUpdate) -> User:
        user = await self.users.get_for_update(user_id)
        if user is None:
            raise NotFound("User not found")
        changed = False
        if changes.display_name is not None and changes.display_name != user.display_name:
            user.display_name = changes.display_name
            changed = True
        if "bio" in changes.model_fields_set and (changes.bio or "") != user.bio:
            user.bio = changes.bio or ""
            changed = True
        if changed:
            user.updated_at = utcnow()
            await emit(
                self.session,
                UserUpdated(
                    user_id=user.id, username=user.username, display_name=user.display_name
                ),
                producer=SERVICE_NAME,
            )
        return user

    async def delete_account(self, user_id: str, password: str) -> None:
        user = await self.users.get_for_update(user_id)
        ok = await self.hasher.verify(password, user.password_hash if user else None)
        if user is None or not ok:
            raise Unauthorized("Wrong password")
        # Tokens go with the row (ON DELETE CASCADE); other services follow user.deleted.
        await self.users.delete(user.id)
        await emit(
            self.session,
            UserDeleted(user_id=user.id),
            producer=SERVICE_NAME,
        )
        log.info("user_deleted", user_id=user.id)

    async def search(self, query: str, *, limit: int, before_id: str | None) -> Sequence[User]:
        return await self.users.search(query, limit=limit, before_id=before_id)
