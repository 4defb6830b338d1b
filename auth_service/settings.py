"""Configuration of auth_service (environment variables prefixed ``AUTH_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.sealing import DEVELOPMENT_SEAL_KEY, is_development_key
from common.settings import ServiceSettings, is_development_secret

__all__ = ["AuthSettings"]


class AuthSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore", env_file=None)

    database_url: SecretStr = SecretStr("postgresql+asyncpg://murmur@127.0.0.1:5432/murmur_auth")
    redis_url: str = "redis://127.0.0.1:6379/0"

    # Signing keys: one or more PEM private keys (Ed25519 or RSA >= 2048), the first one signs,
    # all of them are published in the JWK set so tokens signed before a rotation still verify.
    signing_keys: SecretStr | None = None
    signing_key_file: Path | None = None

    bcrypt_rounds: int = Field(12, ge=4, le=16)
    access_token_ttl_s: int = Field(900, gt=0)
    refresh_token_ttl_s: int = Field(30 * 24 * 3600, gt=0)
    verification_token_ttl_s: int = Field(48 * 3600, gt=0)
    password_reset_token_ttl_s: int = Field(3600, gt=0)
    # Fernet keys (comma-separated, the first seals) shared with email_service alone: the
    # token and address in verification and reset events travel sealed (common.sealing).
    event_seal_keys: SecretStr = SecretStr(DEVELOPMENT_SEAL_KEY)

    # Rate limits in `limits` notation; an empty rule switches that limit off. The scheme and
    # the reasons for each number are in docs/api-auth.md ("Rate limits").
    rate_login_ip: str = "60/minute"
    rate_login_account_client: str = "10/15 minutes"
    rate_login_account: str = "100/hour"
    # How long a client (address, IPv6 /64) that signed in to an account stays exempt from the
    # account-wide limit: as long as the refresh tokens it was given.
    login_known_client_ttl_s: int = Field(30 * 24 * 3600, gt=0)
    rate_register_ip: str = "20/hour"
    rate_resend_verification: str = "3/hour"
    rate_resend_verification_ip: str = "20/hour"
    rate_password_reset: str = "3/hour"  # noqa: S105 (a rate, not a secret)
    rate_password_reset_ip: str = "20/hour"  # noqa: S105 (a rate, not a secret)

    ratelimit_key_prefix: str = "murmur:ratelimit:auth"
    relay_poll_interval_s: float = 1.0

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.signing_keys is None and self.signing_key_file is None:
            problems.append(
                "no signing key configured (AUTH_SIGNING_KEYS or AUTH_SIGNING_KEY_FILE)"
            )
        if is_development_secret(self.database_url):
            problems.append("database_url uses development credentials")
        if self.bcrypt_rounds < 12:
            problems.append("bcrypt_rounds below 12")
        if is_development_key(self.event_seal_keys):
            problems.append("event_seal_keys holds the development key")
        if self.access_token_ttl_s + 30 > self.deny_list_keep_s:
            problems.append("deny_list_keep_s is shorter than an access token's lifetime")
        return problems
