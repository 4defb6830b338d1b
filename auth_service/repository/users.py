"""SQL for the users table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.models import User

__all__ = ["UserRepository"]

_WORD = re.compile(r"\w+")


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: str) -> User | None:
        return await self.session.get(User, user_id)

    async def get_for_update(self, user_id: str) -> User | None:
        return await self.session.get(User, user_id, with_for_update=True)

    async def get_by_username(self, username: str) -> User | None:
        stmt = select(User).where(func.lower(User.username) == username.lower())
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_by_email(self, email: str) -> User | None:
        stmt = select(User).where(func.lower(User.email) == email.lower())
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_by_login(self, login: str) -> User | None:
        """The account whose username or email is ``login`` (case-insensitive)."""
        lowered = login.lower()
        stmt = select(User).where(
            or_(func.lower(User.username) == lowered, func.lower(User.email) == lowered)
        )
        return (await self.session.execute(stmt.limit(1))).scalar_one_or_none()

    async def taken(self, username: str, email: str) -> tuple[bool, bool]:
        """Whether the username and the email are already used (case-insensitive)."""
        stmt = select(
            func.lower(User.username) == username.lower(),
            func.lower(User.email) == email.lower(),
        ).where(
            or_(
                func.lower(User.username) == username.lower(),
                func.lower(User.email) == email.lower(),
            )
        )
        rows = (await self.session.execute(stmt)).all()
        return any(row[0] for row in rows), any(row[1] for row in rows)

    async def add(self, user: User) -> None:
        self.session.add(user)
        await self.session.flush()

    async def delete(self, user_id: str) -> None:
        await self.session.execute(delete(User).where(User.id == user_id))

    async def search(self, query: str, *, limit: int, before_id: str | None) -> Sequence[User]:
        """Users whose username starts with ``query`` or whose display name has words starting
        with its words; newest first, keyset-paginated on the (time-ordered) id."""
        conditions: list[Any] = [
            func.lower(User.username).startswith(query.lower(), autoescape=True)
        ]
        words = _WORD.findall(query.lower())
        if words:
            tsquery = " & ".join(f"{word}:*" for word in words)
            conditions.append(
                func.to_tsvector("simple", User.display_name).op("@@")(
                    func.to_tsquery("simple", tsquery)
                )
            )
        stmt = select(User).where(or_(*conditions))
        if before_id is not None:
            stmt = stmt.where(User.id < before_id)
        stmt = stmt.order_by(User.id.desc()).limit(limit)
        return (await self.session.execute(stmt)).scalars().all()
