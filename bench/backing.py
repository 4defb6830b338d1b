"""The benchmark's own backing servers and platform: free ports, a temporary directory."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deploy.local import (
    MailpitServer,
    ManagedServer,
    Neo4jServer,
    PostgresServer,
    RabbitMQServer,
    RedisServer,
    free_port,
)
from deploy.platform.runner import SERVICES, Backing, Platform

__all__ = ["BenchStack", "machine", "platform_env"]

# Relaxed for loading a graph through the public API from one address. bcrypt cost 4 (the
# minimum) instead of 12 makes a registration or login cost ~1 ms of CPU instead of ~250 ms;
# the tokens live long enough for the whole run. Every rate limit is off (an empty rule): the
# load comes from one address and measures the platform, not the limiter.
_RATE_LIMITS_OFF = {
    name: ""
    for name in (
        "AUTH_RATE_LOGIN_IP",
        "AUTH_RATE_LOGIN_ACCOUNT_CLIENT",
        "AUTH_RATE_LOGIN_ACCOUNT",
        "AUTH_RATE_REGISTER_IP",
        "AUTH_RATE_RESEND_VERIFICATION",
        "AUTH_RATE_RESEND_VERIFICATION_IP",
        "AUTH_RATE_PASSWORD_RESET",
        "AUTH_RATE_PASSWORD_RESET_IP",
        "POST_RATE_POST_USER",
        "POST_RATE_COMMENT_USER",
        "POST_RATE_LIKE_USER",
        "POST_RATE_WRITE_IP",
        "NETWORK_RATE_FOLLOW_USER",
        "NETWORK_RATE_WRITE_IP",
    )
}
_LOADER_ENV = {
    "AUTH_BCRYPT_ROUNDS": "4",
    "AUTH_ACCESS_TOKEN_TTL_S": "14400",
    **_RATE_LIMITS_OFF,
}


def platform_env(*, hybrid_threshold: int, fanout_batch: int) -> dict[str, str]:
    """Environment of every service for a benchmark run (see docs/benchmarks.md)."""
    env = dict(_LOADER_ENV)
    # Per-request INFO logs would measure log writing; warnings and errors are still logged.
    env.update({f"{s.upper()}_LOG_LEVEL": "WARNING" for s in SERVICES})
    env["FEED_HYBRID_THRESHOLD"] = str(hybrid_threshold)
    env["FEED_FANOUT_BATCH_SIZE"] = str(fanout_batch)
    return env


@dataclass
class BenchStack:
    """PostgreSQL, Redis, RabbitMQ, Neo4j and Mailpit, then the five services and nginx."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="murmur-bench-")))
    servers: dict[str, ManagedServer] = field(default_factory=dict)
    platform: Platform | None = None
    # Append-only Redis keeps its data across a restart (the chaos test restarts it).
    redis_appendonly: bool = False

    def __post_init__(self) -> None:
        # PostgreSQL runs as the postgres user when we are root: it must reach the directory.
        self.root.chmod(0o755)
        logs = self.root / "logs"
        self.postgres = PostgresServer(self.root / "postgres", free_port(), logs)
        self.redis = RedisServer(
            self.root / "redis", free_port(), logs, appendonly=self.redis_appendonly
        )
        # Its own epmd, so stopping this node (a broker outage) touches no other node.
        self.rabbitmq = RabbitMQServer(
            self.root / "rabbitmq",
            free_port(),
            free_port(),
            logs,
            dist_port=free_port(),
            epmd_port=free_port(),
        )
        self.neo4j = Neo4jServer(self.root / "neo4j", free_port(), logs)
        self.mailpit = MailpitServer(self.root / "mailpit", free_port(), free_port(), logs)
        self.servers = {
            "postgres": self.postgres,
            "redis": self.redis,
            "rabbitmq": self.rabbitmq,
            "neo4j": self.neo4j,
            "mailpit": self.mailpit,
        }

    def start_backing(self) -> None:
        # Started side by side: RabbitMQ and Neo4j each take several seconds to come up.
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.servers)) as pool:
            for future in [pool.submit(s.start) for s in self.servers.values()]:
                future.result()

    def backing(self) -> Backing:
        urls: dict[str, str] = {}
        for service in ("auth", "post"):
            name = f"bench_{service}"
            self.postgres.create_database(name)
            urls[service] = self.postgres.dsn(name).replace(
                "postgresql://", "postgresql+asyncpg://"
            )
        return Backing(
            database_urls=urls,
            redis_url=self.redis.url.rsplit("/", 1)[0],
            amqp_url=self.rabbitmq.amqp_url,
            neo4j_uri=self.neo4j.bolt_uri,
            smtp_host=self.mailpit.smtp_host,
            smtp_port=self.mailpit.smtp_port,
        )

    def start_platform(self, env: Mapping[str, str]) -> Platform:
        self.platform = Platform(
            backing=self.backing(),
            state_dir=self.root / "platform",
            ports={service: free_port() for service in SERVICES},
            gateway_port=free_port(),
            environment="test",
            extra_env=dict(env),
        )
        self.platform.start(180.0)
        return self.platform

    def restart_service(self, service: str, env: Mapping[str, str]) -> None:
        """Restart one service with a new environment (e.g. the feed with another threshold)."""
        assert self.platform is not None
        self.platform.stop_service(service)
        self.platform.extra_env = dict(env)
        self.platform.start(180.0)

    def redis_db_url(self, db: int) -> str:
        return self.redis.url.rsplit("/", 1)[0] + f"/{db}"

    def stop(self, *, keep: bool = False) -> None:
        if self.platform is not None:
            self.platform.stop()
        for server in reversed(list(self.servers.values())):
            server.stop()
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def queues(self) -> dict[str, int]:
        """Messages ready or unacknowledged in each RabbitMQ queue."""
        response = httpx.get(
            f"{self.rabbitmq.management_url}/api/queues", auth=("guest", "guest"), timeout=10
        )
        response.raise_for_status()
        return {str(q["name"]): int(q.get("messages", 0) or 0) for q in response.json()}

    def queue_depth(self) -> int:
        """Messages waiting to be worked on (0: the system is idle). Dead-letter queues are
        left out: nothing consumes them, so they never drain (the run reports them)."""
        return sum(n for name, n in self.queues().items() if not name.endswith(".dead"))

    def versions(self) -> dict[str, str]:
        def out(cmd: list[str]) -> str:
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
            except OSError:
                return "unknown"
            return (done.stdout or done.stderr).strip().splitlines()[0] if done else "unknown"

        overview = httpx.get(
            f"{self.rabbitmq.management_url}/api/overview", auth=("guest", "guest"), timeout=10
        ).json()
        postgres_bin = Path("/usr/lib/postgresql/15/bin/postgres")
        return {
            "postgresql": out([str(postgres_bin), "--version"]),
            "redis": out(["redis-server", "--version"]),
            "rabbitmq": str(overview.get("rabbitmq_version", "unknown")),
            "erlang": str(overview.get("erlang_version", "unknown")),
            "neo4j": f"{self.neo4j.version} Community (embedded, launcher)",
            "nginx": out(["nginx", "-v"]),
        }


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": os.uname().release,
    }
