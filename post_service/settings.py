"""post_service settings (environment prefix ``POST_``)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings, is_development_secret

__all__ = ["PostSettings"]


class PostSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="POST_", extra="ignore", env_file=None)

    database_url: SecretStr = SecretStr("postgresql+asyncpg://murmur@127.0.0.1:5432/murmur_post")
    relay_poll_interval_s: float = 1.0

    # Rate limits of the writes (`limits` notation; an empty rule is no limit), kept in Redis.
    # Per user as Mastodon's statuses family (300 per 3 hours), plus one bucket per client
    # address for all of them; the numbers and reasons are in docs/api-auth.md ("Rate limits").
    redis_url: str = "redis://127.0.0.1:6379/4"
    ratelimit_key_prefix: str = "murmur:ratelimit:post"
    rate_post_user: str = "300/3 hours"
    rate_comment_user: str = "300/3 hours"
    rate_like_user: str = "1000/hour"
    rate_write_ip: str = "3000/hour"
    # Each new post marks its author in this Redis (common.write_marks) for this long, so
    # feed_service asks post_service for the author's posts only when its feed lacks one.
    write_mark_ttl_s: int = 3600

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if is_development_secret(self.database_url):
            problems.append("database_url uses a development credential")
        return problems
