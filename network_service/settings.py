"""Configuration of network_service (environment variables prefixed ``NETWORK_``)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings

__all__ = ["NetworkSettings"]


class NetworkSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NETWORK_")

    neo4j_uri: str = "bolt://127.0.0.1:7687"
    neo4j_user: str = "neo4j"
    # Empty means "no auth" (the development and test servers run with auth disabled).
    neo4j_password: SecretStr = SecretStr("")
    neo4j_database: str = "neo4j"
    # Managed transactions retry transient errors; an HTTP request must not hang for the
    # driver's 30 s default while Neo4j is down, so it gives up early and the client gets 503.
    neo4j_max_retry_time_s: float = 3.0
    neo4j_connection_timeout_s: float = 3.0
    # How long start-up waits for Neo4j to apply the schema before serving anyway (the schema
    # is then applied in the background as soon as Neo4j answers).
    neo4j_startup_wait_s: float = 30.0
    # Neo4j Community has no LISTEN/NOTIFY: the relay polls, and is also woken in-process
    # right after a commit that wrote an outbox node.
    outbox_poll_interval_s: float = 0.2
    outbox_batch_size: int = 200
    outbox_claim_ttl_s: float = 30.0
    consumer_prefetch: int = 32

    # Rate limits of follow and unfollow (`limits` notation; an empty rule is no limit), kept
    # in Redis: per user as Mastodon's follows family (400 a day), plus one bucket per client
    # address. Numbers and reasons: docs/api-auth.md ("Rate limits").
    redis_url: str = "redis://127.0.0.1:6379/5"
    ratelimit_key_prefix: str = "murmur:ratelimit:network"
    rate_follow_user: str = "400/day"
    rate_write_ip: str = "3000/hour"
