"""The rate limits of post_service's writes, named, over common's Redis limiter."""

from __future__ import annotations

from common.ratelimit import RateLimiter, client_key
from post_service.settings import PostSettings

__all__ = ["PostLimits"]


class PostLimits:
    """Each write counts once for its author and once for the client address it came from."""

    def __init__(self, limiter: RateLimiter, settings: PostSettings) -> None:
        self._limiter = limiter
        self._settings = settings

    async def post(self, user_id: str, ip: str) -> None:
        await self._hit(self._settings.rate_post_user, "post-create", user_id, ip)

    async def comment(self, user_id: str, ip: str) -> None:
        await self._hit(self._settings.rate_comment_user, "post-comment", user_id, ip)

    async def like(self, user_id: str, ip: str) -> None:
        """A like or an unlike: toggling is what floods an author with notifications."""
        await self._hit(self._settings.rate_like_user, "post-like", user_id, ip)

    async def _hit(self, user_rule: str, name: str, user_id: str, ip: str) -> None:
        await self._limiter.hit(self._settings.rate_write_ip, "post-write-ip", client_key(ip))
        await self._limiter.hit(user_rule, name, user_id)
