"""Dependencies shared by the endpoints: services built per request, the current user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from auth_service.repository.users import UserRepository
from auth_service.service.auth import AuthService
from auth_service.service.limits import AuthLimits
from auth_service.service.users import UserService
from common.db import SessionDep
from common.errors import Unauthorized
from common.ratelimit import ClientIP
from common.security import AccessClaims
from common.security import CurrentUser as VerifiedToken

__all__ = [
    "AuthServiceDep",
    "ClientIP",
    "CurrentUser",
    "LimitsDep",
    "UserServiceDep",
]


async def auth_service(request: Request, session: SessionDep) -> AuthService:
    state = request.app.state
    return AuthService(
        session=session,
        settings=state.settings,
        keys=state.keys,
        hasher=state.hasher,
        limits=state.limits,
    )


async def user_service(request: Request, session: SessionDep) -> UserService:
    return UserService(session=session, hasher=request.app.state.hasher)


async def limits(request: Request) -> AuthLimits:
    limits_: AuthLimits = request.app.state.limits
    return limits_


async def current_account(claims: VerifiedToken, session: SessionDep) -> AccessClaims:
    """The caller, whose account still exists: auth's deny-list is its own users table (ids
    are never reused, so a missing row is a deleted account and its token gets 401)."""
    if await UserRepository(session).get(claims.sub) is None:
        raise Unauthorized("This account has been deleted")
    return claims


# The identity map keeps the row, so the endpoint's own lookup of the user costs no query.
CurrentUser = Annotated[AccessClaims, Depends(current_account)]
AuthServiceDep = Annotated[AuthService, Depends(auth_service)]
UserServiceDep = Annotated[UserService, Depends(user_service)]
LimitsDep = Annotated[AuthLimits, Depends(limits)]
