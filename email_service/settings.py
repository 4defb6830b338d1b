"""Configuration of email_service (environment variables prefixed ``EMAIL_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.sealing import DEVELOPMENT_SEAL_KEY, is_development_key
from common.settings import ServiceSettings

__all__ = ["EmailSettings"]


class EmailSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EMAIL_", extra="ignore", env_file=None)

    redis_url: str = "redis://127.0.0.1:6379/0"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_use_tls: bool = False
    # None: upgrade with STARTTLS when the server offers it (Mailpit does not).
    smtp_start_tls: bool | None = None
    smtp_timeout_s: float = Field(10.0, gt=0)

    mail_from: str = "Murmur <no-reply@murmur.local>"
    product_name: str = "Murmur"
    message_id_domain: str = "murmur"

    # The sent-log: event ids already mailed (kept longer than any redelivery can take).
    sent_log_ttl_s: int = Field(30 * 24 * 3600, gt=0)
    # How long one worker holds an event while talking to SMTP before another may try.
    send_lock_ttl_s: int = Field(120, gt=0)
    # After SMTP accepted a mail, recording it as sent is retried this long (a Redis restart)
    # before the event is dead-lettered instead of retried (a retry would send it again).
    sent_record_retry_s: float = Field(60.0, gt=0)
    # Mail still queued for a deleted account is dropped for this long after the deletion.
    deleted_user_ttl_s: int = Field(7 * 24 * 3600, gt=0)
    key_prefix: str = "murmur:email"
    # auth_service's event_seal_keys (the same Secret); sealed fields older than the longest
    # one-time token (verification, 48 h) are refused: their link would be dead anyway.
    event_seal_keys: SecretStr = SecretStr(DEVELOPMENT_SEAL_KEY)
    sealed_max_age_s: int = Field(48 * 3600, gt=0)

    consumer_prefetch: int = Field(16, ge=1)
    delivery_limit: int = Field(10, ge=1)
    retry_delays_ms: list[int] = Field(default_factory=lambda: [1000, 5000, 30000])

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if is_development_key(self.event_seal_keys):
            problems.append("event_seal_keys holds the development key")
        return problems
