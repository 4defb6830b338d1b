"""Each local server starts on free ports, answers its real protocol, and is gone after stop."""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
from email.message import EmailMessage
from pathlib import Path

import aio_pika
import httpx
import neo4j as neo4j_driver
import pytest
import redis

from deploy.local.mailpit import MailpitServer
from deploy.local.neo4j_server import Neo4jServer
from deploy.local.postgres import PostgresServer
from deploy.local.process import ManagedServer, free_port, pid_alive, port_in_use
from deploy.local.rabbitmq import RabbitMQServer
from deploy.local.redis_servers import RedisCluster, RedisServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # World-traversable, so the postgres user can use it when the suite runs as root.
    base = Path(tmp_path_factory.mktemp("deploy-local"))
    for path in (base, *base.parents):
        if str(path).startswith("/tmp/pytest-of-"):
            path.chmod(0o755)
    return base


def _assert_gone(server: ManagedServer, pid: int) -> None:
    assert not pid_alive(pid)
    assert not server.is_running()
    assert server.state() == "stopped"
    assert not any(port_in_use(port) for port in server.ports.values())


def test_redis_starts_answers_and_stops(state_dir: Path) -> None:
    server = RedisServer(state_dir, free_port())
    assert server.start() is True
    try:
        pid = server.pid()
        assert pid is not None
        assert server.state() == "running"
        assert server.start() is False  # already running: says so, starts nothing
        with redis.Redis.from_url(server.url) as client:
            client.set("k", "v")
            assert client.get("k") == b"v"
    finally:
        assert server.stop() is True
    _assert_gone(server, pid)
    assert server.stop() is False


def test_postgres_databases_and_stop(state_dir: Path) -> None:
    server = PostgresServer(state_dir / "pg", free_port())
    server.start()
    try:
        pid = server.pid()
        assert pid is not None
        assert server.create_database("murmur_probe") is True
        assert server.create_database("murmur_probe") is False
        result = subprocess.run(
            ["psql", "-X", "-t", "-A", "-d", server.dsn("murmur_probe"), "-c", "SELECT 40 + 2"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout.strip() == "42"
        with pytest.raises(ValueError):
            server.create_database('x"; DROP DATABASE postgres; --')
    finally:
        server.stop()
    _assert_gone(server, pid)


def _psql(server: PostgresServer, sql: str) -> str:
    result = subprocess.run(
        ["psql", "-X", "-t", "-A", "-d", server.dsn(), "-c", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_postgres_in_a_private_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clone under a 0700 directory (/root, any mktemp -d): as root, the postgres user cannot
    reach the state directory, so the data goes where it can, and a restart finds it again."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    # Stands in for /var/lib/murmur: world-traversable, unlike pytest's tmp_path.
    relocated_root = Path(tempfile.mkdtemp(prefix="murmur-pg-relocated-"))
    relocated_root.chmod(0o755)
    monkeypatch.setattr("deploy.local.postgres.RELOCATED_ROOT", relocated_root)
    state = private / "clone" / ".murmur" / "postgres"
    server = PostgresServer(state, free_port())
    try:
        server.start()
        _psql(server, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
        if os.geteuid() == 0:
            assert server.relocated
            assert server.data_dir.is_relative_to(relocated_root)
            assert "relocated" in server.describe()
        else:
            assert not server.relocated
            assert server.data_dir.is_relative_to(state)
        assert str(server.data_dir) in server.describe()
        server.stop()
        # A new object, as a later `make up` or `make status` would make: same data.
        again = PostgresServer(state, server.port)
        assert again.data_dir == server.data_dir
        again.start()
        assert _psql(again, "SELECT v FROM kept") == "7"
    finally:
        PostgresServer(state, server.port).stop()
        shutil.rmtree(relocated_root, ignore_errors=True)


async def test_rabbitmq_restart_keeps_durable_queue(state_dir: Path) -> None:
    server = RabbitMQServer(
        state_dir, free_port(), free_port(), dist_port=free_port(), epmd_port=free_port()
    )
    server.start()
    try:
        ports = dict(server.ports)
        response = httpx.get(f"{server.management_url}/api/overview", auth=("guest", "guest"))
        assert response.status_code == 200
        connection = await aio_pika.connect(server.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue("survivor", durable=True)
            await channel.default_exchange.publish(
                aio_pika.Message(b"kept", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue.name,
            )
        pid = server.pid()
        assert pid is not None
        server.stop()
        _assert_gone(server, pid)

        server.start()
        assert server.ports == ports
        connection = await aio_pika.connect(server.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue("survivor", durable=True, passive=True)
            message = await queue.get(timeout=5)
            assert message.body == b"kept"
            await message.ack()
        vhost_url = server.create_vhost("isolated")
        connection = await aio_pika.connect(vhost_url)
        await connection.close()
    finally:
        server.stop()


def test_neo4j_bolt_and_clean_stop(state_dir: Path) -> None:
    server = Neo4jServer(state_dir, free_port(), heap="512m")
    server.start()
    try:
        pid = server.pid()
        assert pid is not None
        with neo4j_driver.GraphDatabase.driver(server.bolt_uri) as driver:
            driver.execute_query("CREATE (:Probe {name: 'kept'})")
    finally:
        server.stop()
    _assert_gone(server, pid)
    # The store was closed cleanly: a second start sees the data.
    server.start()
    try:
        with neo4j_driver.GraphDatabase.driver(server.bolt_uri) as driver:
            records, _, _ = driver.execute_query("MATCH (p:Probe) RETURN p.name AS name")
            assert [r["name"] for r in records] == ["kept"]
    finally:
        server.stop()


def test_mailpit_keeps_mail_across_a_restart_and_serves_its_ui(state_dir: Path) -> None:
    server = MailpitServer(state_dir, free_port(), free_port())
    assert server.start() is True
    try:
        message = EmailMessage()
        message["From"] = "murmur@example.org"
        message["To"] = "alice@example.org"
        message["Subject"] = "Kept"
        message.set_content("still here")
        with smtplib.SMTP(server.smtp_host, server.smtp_port) as smtp:
            smtp.send_message(message)
        assert server.stop() is True
        assert server.start() is True
        pid = server.pid()
        assert pid is not None
        listing = httpx.get(f"{server.api_url}/api/v1/messages").json()
        assert [m["Subject"] for m in listing["messages"]] == ["Kept"]
        assert server.database.exists()
        # The web UI is the real one, bundle included (the Go module alone lacks it).
        index = httpx.get(f"{server.api_url}/")
        assert index.status_code == 200 and "<title>Mailpit</title>" in index.text
        bundle = httpx.get(f"{server.api_url}/dist/app.js")
        assert bundle.status_code == 200 and len(bundle.content) > 100_000
        info = httpx.get(f"{server.api_url}/api/v1/info").json()
        assert info["Version"] == server.version
        assert info["LatestVersion"] == "disabled"  # no release check over the network
    finally:
        server.stop()
    _assert_gone(server, pid)


def test_redis_cluster_is_ok(state_dir: Path) -> None:
    cluster = RedisCluster(state_dir)
    cluster.start()
    try:
        assert cluster.cluster_info()["cluster_state"] == "ok"
        assert cluster.cluster_info()["cluster_known_nodes"] == "3"
        host, port = cluster.startup_nodes[0]
        client = redis.RedisCluster(host=host, port=port)
        try:
            for i in range(20):
                client.set(f"key-{i}", i)
            assert client.get("key-7") == b"7"
        finally:
            client.close()
    finally:
        cluster.stop()
    assert not cluster.is_running()


def test_cli_up_status_down(state_dir: Path) -> None:
    """The CLI on a private state dir; only Redis, so the default ports are never touched."""
    env = {**os.environ, "MURMUR_STATE_DIR": str(state_dir / "murmur")}
    port = free_port()
    script = (
        "import sys, deploy.local.stack as s, deploy.local.__main__ as m\n"
        "orig = s.default_servers\n"
        f"s.default_servers = lambda root=None: {{**orig(root), 'redis': "
        f"s.RedisServer(s.state_root() / 'redis', {port}, s.state_root() / 'logs')}}\n"
        "m.default_servers = s.default_servers\n"
        "m.app(sys.argv[1:])\n"
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    up = cli("up", "--only", "redis")
    assert up.returncode == 0, up.stderr
    assert "redis" in up.stdout and "started" in up.stdout
    again = cli("up", "--only", "redis")
    assert "already running" in again.stdout
    status = cli("status", "--only", "redis")
    assert status.returncode == 0
    assert "running" in status.stdout
    pidfile = state_dir / "murmur" / "logs" / "redis.pid"
    pid = int(pidfile.read_text())
    assert pid_alive(pid)  # survived the command that started it
    down = cli("down", "--only", "redis")
    assert "stopped" in down.stdout
    assert not pid_alive(pid)
    assert cli("status", "--only", "redis").returncode == 3
    assert cli("up", "--only", "nosuch").returncode != 0
