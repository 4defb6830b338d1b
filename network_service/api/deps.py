"""Dependencies shared by the routers: the service objects and path parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from network_service.service.follows import FollowService
from network_service.service.limits import NetworkLimits

__all__ = ["FollowServiceDep", "LimitsDep", "UserIdPath", "get_follow_service"]

# Ids are UUIDv7 strings or decimal snowflakes; anything longer is not an id of ours.
UserIdPath = Annotated[str, Path(min_length=1, max_length=64, description="A user id")]


async def get_follow_service(request: Request) -> FollowService:
    service: FollowService = request.app.state.follow_service
    return service


FollowServiceDep = Annotated[FollowService, Depends(get_follow_service)]


async def get_limits(request: Request) -> NetworkLimits:
    limits: NetworkLimits = request.app.state.limits
    return limits


LimitsDep = Annotated[NetworkLimits, Depends(get_limits)]
