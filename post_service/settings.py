"""post_service settings (environment prefix ``POST_``)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings, is_development_secret

__all__ = ["PostSettings"]


class PostSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="POST_", extra="ignore", env_file=None)

    database_url: SecretStr = SecretStr("postgresql+asyncpg://murmur@127.0.0.1:5432/murmur_post")
    run_workers: bool = True
    relay_poll_interval_s: float = 1.0

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if is_development_secret(self.database_url):
            problems.append("database_url uses a development credential")
        return problems
