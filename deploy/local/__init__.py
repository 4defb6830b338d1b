"""Local backing servers (PostgreSQL, Redis, RabbitMQ, Neo4j, Mailpit) for development and tests."""

from deploy.local.mailpit import MailpitServer
from deploy.local.neo4j_server import Neo4jServer
from deploy.local.postgres import PostgresServer
from deploy.local.process import ManagedServer, ServerError, free_port
from deploy.local.rabbitmq import RabbitMQServer
from deploy.local.redis_servers import RedisCluster, RedisServer

__all__ = [
    "MailpitServer",
    "ManagedServer",
    "Neo4jServer",
    "PostgresServer",
    "RabbitMQServer",
    "RedisCluster",
    "RedisServer",
    "ServerError",
    "free_port",
]
