"""The rate-limit rules of auth_service, named, over common's Redis limiter."""

from __future__ import annotations

from auth_service.settings import AuthSettings
from common.ratelimit import RateLimiter

__all__ = ["AuthLimits"]


class AuthLimits:
    def __init__(self, limiter: RateLimiter, settings: AuthSettings) -> None:
        self._limiter = limiter
        self._settings = settings

    async def login(self, ip: str, login: str) -> None:
        await self._limiter.hit(self._settings.rate_login_ip, "auth-login-ip", ip)
        await self._limiter.hit(
            self._settings.rate_login_account, "auth-login-account", login.lower()
        )

    async def register(self, ip: str) -> None:
        await self._limiter.hit(self._settings.rate_register_ip, "auth-register-ip", ip)

    async def resend_verification(self, email: str) -> None:
        await self._limiter.hit(
            self._settings.rate_resend_verification, "auth-resend", email.lower()
        )

    async def password_reset(self, email: str) -> None:
        await self._limiter.hit(self._settings.rate_password_reset, "auth-reset", email.lower())
