"""The development stack: every backing server at its default port, state in `.murmur/`."""

from __future__ import annotations

import os
from pathlib import Path

from deploy.local.jaeger import JaegerServer
from deploy.local.mailpit import MailpitServer
from deploy.local.neo4j_server import Neo4jServer
from deploy.local.postgres import PostgresServer
from deploy.local.process import ManagedServer
from deploy.local.rabbitmq import RabbitMQServer
from deploy.local.redis_servers import RedisServer

REPO_ROOT = Path(__file__).resolve().parents[2]
DATABASES = ("murmur_auth", "murmur_post")
NAMES = ("postgres", "redis", "rabbitmq", "neo4j", "mailpit", "jaeger")


def state_root() -> Path:
    return Path(os.environ.get("MURMUR_STATE_DIR", REPO_ROOT / ".murmur")).absolute()


def default_servers(root: Path | None = None) -> dict[str, ManagedServer]:
    root = root or state_root()
    logs = root / "logs"
    return {
        "postgres": PostgresServer(root / "postgres", 5432, logs),
        "redis": RedisServer(root / "redis", 6379, logs),
        "rabbitmq": RabbitMQServer(
            root / "rabbitmq", 5672, 15672, logs, dist_port=25672, epmd_port=4369
        ),
        "neo4j": Neo4jServer(root / "neo4j", 7687, logs),
        "mailpit": MailpitServer(root / "mailpit", 1025, 8025, logs),
        "jaeger": JaegerServer(root / "jaeger", 16686, 4317, 4318, logs),
    }
