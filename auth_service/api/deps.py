"""Dependencies shared by the endpoints: services built per request, the current user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from auth_service.service.auth import AuthService
from auth_service.service.limits import AuthLimits
from auth_service.service.users import UserService
from common.db import SessionDep
from common.security import CurrentUser

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
        session=session, settings=state.settings, keys=state.keys, hasher=state.hasher
    )


async def user_service(request: Request, session: SessionDep) -> UserService:
    return UserService(session=session, hasher=request.app.state.hasher)


async def limits(request: Request) -> AuthLimits:
    limits_: AuthLimits = request.app.state.limits
    return limits_


async def client_ip(request: Request) -> str:
    # Behind the gateway uvicorn's proxy-headers support has already put the real client here.
    return request.client.host if request.client else "unknown"


AuthServiceDep = Annotated[AuthService, Depends(auth_service)]
UserServiceDep = Annotated[UserService, Depends(user_service)]
LimitsDep = Annotated[AuthLimits, Depends(limits)]
ClientIP = Annotated[str, Depends(client_ip)]
