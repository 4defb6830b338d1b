"""Async SQLAlchemy engine and per-request session helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

__all__ = [
    "NAMING_CONVENTION",
    "SessionDep",
    "create_engine",
    "get_session",
    "new_metadata",
    "session_factory",
]

# The one SQL naming convention of the PostgreSQL services: <kind>_<table>_<every column>, so
# migrations can name what they alter and a constraint error says what it is about. Indexes
# on an expression are named by hand the same way, the column first and then what is applied
# to it (ix_authors_username_lower), with uq_ for a unique one (uq_users_email_lower).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    """The ``MetaData`` of a service's models, with :data:`NAMING_CONVENTION`."""
    return MetaData(naming_convention=NAMING_CONVENTION)


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
