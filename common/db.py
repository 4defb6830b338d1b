"""Async SQLAlchemy engine and per-request session helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

__all__ = ["SessionDep", "create_engine", "get_session", "session_factory"]


def create_engine(url: str, **kw: Any) -> AsyncEngine:
    """An asyncpg engine; pre-ping so a restarted PostgreSQL costs one retry, not a 500.

    ``hide_parameters``: a failed statement's error (and any log line made from it) would
    otherwise carry the bound values, such as an email address or a password hash.
    """
    kw.setdefault("pool_pre_ping", True)
    kw.setdefault("hide_parameters", True)
    return create_async_engine(url, **kw)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: endpoints serialise ORM objects after the commit.
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session (and transaction) per request: commit on success, roll back on error."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function": commit before the response is sent, so a client never sees a 2xx for a
# transaction that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
