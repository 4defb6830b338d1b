"""Session-wide backing servers for the test suite, started lazily on free ports.

Each fixture starts its server the first time a test asks for it, in a private temporary
directory, and every server is stopped when the session ends (also after failures or Ctrl-C:
an atexit hook covers what fixture teardown misses). What must be installed or built first
(Debian packages, the Neo4j launcher, Mailpit) is done right after collection, for the servers
the selected tests need, so it does not count against a test's timeout.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import TypeVar
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from deploy.local import install
from deploy.local.jaeger import JaegerServer
from deploy.local.mailpit import MailpitServer
from deploy.local.neo4j_server import Neo4jServer
from deploy.local.postgres import PostgresServer
from deploy.local.process import ManagedServer, free_port
from deploy.local.rabbitmq import GUEST, RabbitMQServer
from deploy.local.redis_servers import RedisCluster, RedisServer
from deploy.platform.runner import Backing
from tests.support.mailpit import Mailpit
from tests.support.platform import backing_from_fixtures

MakeDatabase = Callable[[str], Awaitable[str]]
MakeVhost = Callable[[str], Awaitable[str]]
MakeBacking = Callable[[str], Awaitable[Backing]]
_S = TypeVar("_S", bound=ManagedServer | RedisCluster)

# Service tests watch events on queues of their own, without the services that consume them:
# there the relay must not wait for those services' queues (common.messaging.Publisher,
# ``await_consumer_queues``). Tests of that wait, and platforms started through
# deploy.platform.runner, turn it back on explicitly.
for _prefix in ("AUTH", "POST", "NETWORK"):
    os.environ.setdefault(f"{_prefix}_RELAY_AWAITS_CONSUMER_QUEUES", "false")


class _Servers:
    """Every server this session started, in one temporary directory, stopped at the end."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self._started: list[ManagedServer | RedisCluster] = []
        self._counter = itertools.count()

    def dir(self, name: str) -> Path:
        if self._root is None:
            # Not pytest's tmp_path: that one is private to root (0700), and PostgreSQL runs as
            # the postgres user.
            self._root = Path(tempfile.mkdtemp(prefix="murmur-test-"))
            self._root.chmod(0o755)
        path = self._root / f"{name}-{next(self._counter)}"
        path.mkdir()
        return path

    def start(self, server: _S) -> _S:
        self._started.append(server)
        server.start()
        return server

    def stop_all(self) -> None:
        # In parallel: each stop mostly waits (SIGTERM, then polling), and one at a time the
        # session's end took tens of seconds. A cluster's nodes are stopped side by side too.
        servers, self._started = self._started[::-1], []
        units: list[ManagedServer] = [
            node
            for server in servers
            for node in (server.nodes if isinstance(server, RedisCluster) else [server])
        ]
        if units:
            # Leaving the block joins every stop, even when a SIGTERM (SystemExit) interrupts
            # the wait, so no server outlives the session.
            with ThreadPoolExecutor(max_workers=len(units), thread_name_prefix="stop") as pool:
                for _ in pool.map(_stop_quietly, units):
                    pass
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None


def _stop_quietly(server: ManagedServer) -> None:
    try:
        server.stop()
    except Exception as exc:  # keep stopping the others
        print(f"could not stop {server!r}: {exc}", file=sys.stderr)


_SERVERS = _Servers()
atexit.register(_SERVERS.stop_all)

# Which fixtures need which installation step before their first start.
_INSTALL_STEPS: dict[str, Callable[[], object]] = {
    "postgres": lambda: install.ensure_apt("postgresql"),
    "redis_server": lambda: install.ensure_apt("redis-server"),
    "redis_cluster": lambda: install.ensure_apt("redis-server"),
    "private_postgres": lambda: install.ensure_apt("postgresql"),
    "private_redis": lambda: install.ensure_apt("redis-server"),
    "private_rabbitmq": lambda: install.ensure_apt("rabbitmq-server"),
    "rabbitmq": lambda: install.ensure_apt("rabbitmq-server"),
    "neo4j": install.ensure_neo4j_launcher,
    "mailpit": install.ensure_mailpit,
    "jaeger": install.ensure_jaeger,
}
_FIXTURE_DEPENDENCIES = {
    "make_database": "postgres",
    "redis_url": "redis_server",
    "make_vhost": "rabbitmq",
    "inbox": "mailpit",
}


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM'd pytest should still run the atexit hook that stops the servers.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def _exit(signum: int, frame: FrameType | None) -> None:
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, _exit)


def pytest_collection_finish(session: pytest.Session) -> None:
    needed: set[str] = set()
    for item in session.items:
        names = set(getattr(item, "fixturenames", ()))
        needed |= names | {_FIXTURE_DEPENDENCIES[n] for n in names if n in _FIXTURE_DEPENDENCIES}
    for name, step in _INSTALL_STEPS.items():
        if name in needed:
            step()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SERVERS.stop_all()


@pytest.fixture(scope="session")
def _servers() -> Iterator[_Servers]:
    yield _SERVERS
    _SERVERS.stop_all()


@pytest.fixture(scope="session")
def postgres(_servers: _Servers) -> PostgresServer:
    return _servers.start(PostgresServer(_servers.dir("postgres"), free_port()))


@pytest.fixture(scope="session")
def make_database(postgres: PostgresServer) -> MakeDatabase:
    """`await make_database("auth")` -> SQLAlchemy URL of a fresh empty database."""
    return database_maker(postgres)


def database_maker(postgres: PostgresServer) -> MakeDatabase:
    """A `make_database` on ``postgres`` (a module overrides the fixture with its own server)."""
    counter = itertools.count()

    async def make(prefix: str) -> str:
        name = f"{_slug(prefix)}_{next(counter)}_{uuid.uuid4().hex[:8]}"
        connection = await asyncpg.connect(postgres.dsn())
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return postgres.dsn(name).replace("postgresql://", "postgresql+asyncpg://", 1)

    return make


@pytest.fixture(scope="session")
def redis_server(_servers: _Servers) -> RedisServer:
    return _servers.start(RedisServer(_servers.dir("redis"), free_port(), appendonly=False))


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(_servers: _Servers) -> RedisCluster:
    return _servers.start(RedisCluster(_servers.dir("redis-cluster")))


@pytest.fixture(scope="session")
def rabbitmq(_servers: _Servers) -> RabbitMQServer:
    server = RabbitMQServer(
        _servers.dir("rabbitmq"),
        free_port(),
        free_port(),
        dist_port=free_port(),
        epmd_port=free_port(),
    )
    return _servers.start(server)


@pytest.fixture(scope="session")
def make_vhost(rabbitmq: RabbitMQServer) -> MakeVhost:
    """`await make_vhost("email")` -> amqp URL of a fresh, empty vhost."""
    counter = itertools.count()

    async def make(prefix: str) -> str:
        name = f"{_slug(prefix)}-{next(counter)}-{uuid.uuid4().hex[:8]}"
        api = f"{rabbitmq.management_url}/api"
        async with httpx.AsyncClient(auth=GUEST, timeout=30) as client:
            (await client.put(f"{api}/vhosts/{quote(name, safe='')}")).raise_for_status()
            permissions = {"configure": ".*", "write": ".*", "read": ".*"}
            url = f"{api}/permissions/{quote(name, safe='')}/guest"
            (await client.put(url, json=permissions)).raise_for_status()
        return rabbitmq.vhost_url(name)

    return make


@pytest.fixture(scope="module")
def private_redis(_servers: _Servers) -> Iterator[RedisServer]:
    """A Redis server of the test module's own, which its tests may stop and restart."""
    server = _servers.start(RedisServer(_servers.dir("redis-private"), free_port()))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private_postgres(_servers: _Servers) -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test module's own, which its tests may stop and restart."""
    server = _servers.start(PostgresServer(_servers.dir("postgres-private"), free_port()))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private_rabbitmq(_servers: _Servers) -> Iterator[RabbitMQServer]:
    """A RabbitMQ node of the test module's own, which its tests may stop and restart."""
    server = RabbitMQServer(
        _servers.dir("rabbitmq-private"),
        free_port(),
        free_port(),
        dist_port=free_port(),
        epmd_port=free_port(),
    )
    _servers.start(server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def neo4j(_servers: _Servers) -> Neo4jServer:
    return _servers.start(Neo4jServer(_servers.dir("neo4j"), free_port(), heap="512m"))


@pytest.fixture(scope="session")
def mailpit(_servers: _Servers) -> MailpitServer:
    return _servers.start(MailpitServer(_servers.dir("mailpit"), free_port(), free_port()))


@pytest.fixture(scope="module")
def make_backing(
    make_database: MakeDatabase,
    redis_server: RedisServer,
    make_vhost: MakeVhost,
    neo4j: Neo4jServer,
    mailpit: MailpitServer,
) -> MakeBacking:
    """`await make_backing("e2e")` -> the backing services of a whole platform (see
    ``tests.support.platform.backing_from_fixtures``)."""

    async def make(prefix: str) -> Backing:
        return await backing_from_fixtures(
            prefix, make_database, redis_server, make_vhost, neo4j, mailpit
        )

    return make


@pytest.fixture(scope="session")
def jaeger(_servers: _Servers) -> JaegerServer:
    """Jaeger v2 on free ports: OTLP in (``otlp_http_url``), the query API at ``api_url``."""
    server = JaegerServer(
        _servers.dir("jaeger"),
        free_port(),
        free_port(),
        free_port(),
        query_grpc_port=free_port(),
    )
    return _servers.start(server)


@pytest.fixture(scope="session")
def inbox(mailpit: MailpitServer) -> Mailpit:
    """The session's Mailpit, read through its API."""
    return Mailpit(mailpit.api_url)


def _slug(prefix: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:30] or "db"
