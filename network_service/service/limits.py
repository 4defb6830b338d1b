"""The rate limits of network_service's writes, over common's Redis limiter."""

from __future__ import annotations

from common.ratelimit import RateLimiter, client_key
from network_service.settings import NetworkSettings

__all__ = ["NetworkLimits"]


class NetworkLimits:
    def __init__(self, limiter: RateLimiter, settings: NetworkSettings) -> None:
        self._limiter = limiter
        self._settings = settings

    async def follow(self, user_id: str, ip: str) -> None:
        """A follow or an unfollow: each one merges or unmerges a whole feed and may notify."""
        await self._limiter.hit(self._settings.rate_write_ip, "network-write-ip", client_key(ip))
        await self._limiter.hit(self._settings.rate_follow_user, "network-follow", user_id)
