"""Settings shared by every service (pydantic-settings; each service adds its own prefix)."""

from __future__ import annotations

import logging
from typing import Literal, Self

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings", "UnsafeSettingsError", "is_development_secret"]

# Credentials that only make sense on a developer's machine.
_WELL_KNOWN_CREDENTIALS = ("guest:guest@", "postgres:postgres@", "neo4j:neo4j@", "changeme")


class UnsafeSettingsError(ValueError):
    """Production settings still hold a development-only value."""


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set ``env_prefix`` (``AUTH_``, ``POST_``, ...)."""

    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwt_issuer: str = "murmur-auth"
    jwt_audience: str = "murmur"
    public_base_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = 1_048_576
    readiness_timeout_s: float = 2.0
    # ``serve`` also runs the service's background workers (consumers, outbox relay); false
    # when ``python -m <service> worker`` runs them in a process of their own.
    run_workers: bool = True
    # How long a deleted account's tokens stay denied: at least the longest access-token
    # lifetime (auth's access_token_ttl_s, 900 s) plus the verifier's leeway (30 s).
    deny_list_keep_s: float = 960.0
    deny_list_refresh_s: float = 1.0
    # /docs, /redoc and /openapi.json; None means "outside production only".
    api_docs: bool | None = None
    # Peers whose X-Forwarded-For uvicorn believes (comma-separated IPs or CIDRs, "*" for
    # all): the gateway or the ingress controller, never a network clients can reach from.
    trusted_proxies: str = "127.0.0.1"
    # Shared by the services for /internal/* (common.internal); the default is refused in
    # production, where it comes from the chart's Secret.
    internal_token: SecretStr = SecretStr("changeme-internal-token")
    # The outbox relay publishes an event only once every service consuming its type has
    # declared its queue (a fresh deployment's routing race: common.messaging.Publisher).
    # Off only in tests that watch events on a queue of their own without those services.
    relay_awaits_consumer_queues: bool = True
    # Housekeeping of the PostgreSQL services (auth, post), run by their outbox relay every
    # outbox_purge_interval_s: published outbox rows are kept outbox_retention_s (for
    # inspection), processed-event records (post's consumer) processed_events_retention_s.
    # A redelivery older than that would be applied again: redeliveries come within minutes
    # (retry queues top out at 30 s), hours after a long outage, so a week is ample.
    outbox_retention_s: float = 86_400.0
    processed_events_retention_s: float = 604_800.0
    outbox_purge_interval_s: float = 600.0

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if not isinstance(logging.getLevelNamesMapping().get(level), int):
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("max_body_bytes")
    @classmethod
    def _positive_body_limit(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("max_body_bytes must be positive")
        return value

    @field_validator(
        "outbox_retention_s", "processed_events_retention_s", "outbox_purge_interval_s"
    )
    @classmethod
    def _positive_duration(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @property
    def api_docs_enabled(self) -> bool:
        return self.api_docs if self.api_docs is not None else self.environment != "production"

    def production_problems(self) -> list[str]:
        """Reasons these settings are unsafe for production; subclasses extend the list."""
        problems: list[str] = []
        if is_development_secret(self.amqp_url):
            problems.append("amqp_url uses the default guest credentials")
        if is_development_secret(self.internal_token) or len(self.internal_token) < 32:
            problems.append("internal_token is the development default or under 32 characters")
        return problems

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.environment == "production":
            problems = self.production_problems()
            if problems:
                raise UnsafeSettingsError("unsafe production settings: " + "; ".join(problems))
        return self


def is_development_secret(secret: SecretStr) -> bool:
    """True when ``secret`` holds a well-known development credential (for production checks)."""
    value = secret.get_secret_value()
    return any(marker in value for marker in _WELL_KNOWN_CREDENTIALS)
