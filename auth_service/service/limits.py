"""The rate-limit rules of auth_service, named, over common's Redis limiter.

Login is limited three ways (docs/api-auth.md, "Rate limits"): per client address over every
attempt; per (account, client) over the attempts since that client's last success, so one
client guessing a password locks only itself out of that account; and per account over the
attempts of clients that never signed in to it, which bounds a guesser spread over many
addresses without ever blocking a client the owner already signed in from. Accounts are
keyed on their id, so the username and the email spell one bucket.
"""

from __future__ import annotations

import redis.asyncio as redis

from auth_service.settings import AuthSettings
from common.ratelimit import RateLimiter, client_key

__all__ = ["AuthLimits"]


class AuthLimits:
    def __init__(
        self, limiter: RateLimiter, settings: AuthSettings, redis_client: redis.Redis
    ) -> None:
        self._limiter = limiter
        self._settings = settings
        self._redis = redis_client

    async def login_client(self, ip: str) -> None:
        """Every login attempt of one client address, before any lookup."""
        await self._limiter.hit(self._settings.rate_login_ip, "auth-login-ip", client_key(ip))

    async def login_attempt(self, ip: str, account: str) -> None:
        """One attempt on ``account`` (a user id, or the lowered login of no account)."""
        client = client_key(ip)
        await self._limiter.hit(
            self._settings.rate_login_account_client, "auth-login-account-client", account, client
        )
        if not await self._redis.exists(self._known_key(account, client)):
            await self._limiter.hit(
                self._settings.rate_login_account, "auth-login-account", account
            )

    async def login_succeeded(self, ip: str, account: str) -> None:
        """The client proved the password: its failures are forgiven and it becomes known."""
        client = client_key(ip)
        await self._limiter.reset(
            self._settings.rate_login_account_client, "auth-login-account-client", account, client
        )
        await self._redis.set(
            self._known_key(account, client), b"1", ex=self._settings.login_known_client_ttl_s
        )

    def _known_key(self, account: str, client: str) -> str:
        return f"{self._settings.ratelimit_key_prefix}:known-client:{account}:{client}"

    async def register(self, ip: str) -> None:
        await self._limiter.hit(self._settings.rate_register_ip, "auth-register-ip", client_key(ip))

    async def resend_verification(self, ip: str, user_id: str) -> None:
        await self._limiter.hit(
            self._settings.rate_resend_verification_ip, "auth-resend-ip", client_key(ip)
        )
        await self._limiter.hit(self._settings.rate_resend_verification, "auth-resend", user_id)

    async def password_reset(self, ip: str, email: str) -> None:
        # The client first: one client flooding addresses must not spend their allowances.
        await self._limiter.hit(
            self._settings.rate_password_reset_ip, "auth-reset-ip", client_key(ip)
        )
        await self._limiter.hit(self._settings.rate_password_reset, "auth-reset", email.lower())
