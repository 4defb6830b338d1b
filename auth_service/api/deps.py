"""Dependencies shared by the endpoints: services built per request, the current user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from auth_service.service.auth import AuthService
from auth_service.service.limits import AuthLimits
from auth_service.service.users import UserService
from common.db import SessionDep
from common.errors import Unauthorized
from common.security import AccessClaims, TokenVerifier

__all__ = [
    "AuthServiceDep",
    "ClientIP",
    "CurrentUser",
    "LimitsDep",
    "UserServiceDep",
]

# The password flow in OpenAPI is what makes the /docs "Authorize" button log in; the token
# is then verified exactly as every other service does (common.security.TokenVerifier).
_oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def current_user(
    request: Request, token: Annotated[str | None, Depends(_oauth2)]
) -> AccessClaims:
    if not token:
        raise Unauthorized("Not authenticated")
    verifier: TokenVerifier = request.app.state.token_verifier
    return await verifier.verify(token)


def auth_service(request: Request, session: SessionDep) -> AuthService:
    state = request.app.state
    return AuthService(
        session=session, settings=state.settings, keys=state.keys, hasher=state.hasher
    )


def user_service(request: Request, session: SessionDep) -> UserService:
    return UserService(session=session, hasher=request.app.state.hasher)


def limits(request: Request) -> AuthLimits:
    limits_: AuthLimits = request.app.state.limits
    return limits_


def client_ip(request: Request) -> str:
    # Behind the gateway uvicorn's proxy-headers support has already put the real client here.
    return request.client.host if request.client else "unknown"


CurrentUser = Annotated[AccessClaims, Depends(current_user)]
AuthServiceDep = Annotated[AuthService, Depends(auth_service)]
UserServiceDep = Annotated[UserService, Depends(user_service)]
LimitsDep = Annotated[AuthLimits, Depends(limits)]
ClientIP = Annotated[str, Depends(client_ip)]
