"""feed_service settings (environment prefix ``FEED_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings

__all__ = ["FeedSettings"]


class FeedSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FEED_", extra="ignore", env_file=None)

    redis_url: str = "redis://127.0.0.1:6379/0"
    # A Redis Cluster URL (any node) is used through RedisCluster; keys carry hash tags.
    redis_cluster: bool = False
    post_service_url: str = "http://127.0.0.1:8002"
    network_service_url: str = "http://127.0.0.1:8003"
    internal_timeout_s: float = 5.0
    # Read-your-own-writes asks post_service for the reader's newest posts; keep it short.
    own_posts_timeout_s: float = 0.5
    # post_service's Redis, where it marks each user's newest post (common.write_marks): a
    # first page asks post_service only when the mark is newer than the feed's own posts.
    # Unset: every first page asks.
    write_marks_redis_url: str | None = None

    feed_cap: int = 800
    # Fan-out trims a feed only once it holds more than feed_cap + this (reads stop at the
    # cap): most deliveries then cost no trim.
    trim_slack: int = 64
    fanout_batch_size: int = 1000
    # Followers at or below this are written inline by the post.created handler (no queue hop).
    inline_fanout_max: int = 1000
    fanout_workers: int = 2
    fanout_prefetch: int = 4
    hybrid_threshold: int = 10_000
    # A big author is fanned out again once its followers fall below threshold * this ratio.
    hybrid_unmark_ratio: float = 0.8
    idle_days: float = 30.0
    # A read renews the idle TTL only once this much of it has run down (not on every read):
    # a feed read at least this often never expires.
    touch_interval_s: float = 86_400.0
    tombstone_ttl_s: int = 14 * 24 * 3600
    post_cache_ttl_s: int = 7 * 24 * 3600
    # Entries filled from post_service's batch API carry counts that events may not track
    # exactly; a short TTL bounds the drift.
    post_cache_fallback_ttl_s: int = 60
    notification_cap: int = 500
    sse_heartbeat_s: float = 15.0
    sse_block_ms: int = 5000
    rebuild_lock_s: float = 30.0
    event_prefetch: int = 32

    @property
    def idle_ttl_ms(self) -> int:
        return int(self.idle_days * 86_400_000)
