"""Redis 7: a single server (append-only data) and a three-node Redis Cluster for tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import redis

from deploy.local import install
from deploy.local.process import HOST, ManagedServer, ServerError, free_port, poll, run

REDIS_SERVER = "/usr/bin/redis-server"


class RedisServer(ManagedServer):
    name = "redis"

    def __init__(
        self,
        state_dir: Path,
        port: int = 6379,
        log_dir: Path | None = None,
        *,
        cluster: bool = False,
        appendonly: bool = True,
    ) -> None:
        super().__init__(state_dir, log_dir)
        self.port = port
        self.cluster = cluster
        self.appendonly = appendonly

    @property
    def ports(self) -> dict[str, int]:
        # Cluster nodes also listen on the bus port (port + 10000).
        extra = {"bus": self.port + 10000} if self.cluster else {}
        return {"port": self.port, **extra}

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "redis.conf"

    def prepare(self) -> None:
        install.ensure_apt("redis-server")
        lines = [
            f"bind {HOST}",
            f"port {self.port}",
            f"dir {self.state_dir}",
            "daemonize no",
            # Bound to loopback only, so protected mode (meant for passwordless servers on
            # public interfaces) would only get in the way.
            "protected-mode no",
            f"appendonly {'yes' if self.appendonly else 'no'}",
            "save 3600 1" if self.appendonly else 'save ""',
            "logfile ''",
        ]
        if self.cluster:
            lines += [
                "cluster-enabled yes",
                f"cluster-config-file {self.state_dir / 'nodes.conf'}",
                "cluster-node-timeout 5000",
            ]
        self.config_file.write_text("\n".join(lines) + "\n")

    def command(self) -> Sequence[str]:
        return [REDIS_SERVER, str(self.config_file)]

    def check_ready(self) -> bool:
        try:
            client = redis.Redis(
                host=HOST, port=self.port, socket_timeout=2, socket_connect_timeout=2
            )
            with client:
                return bool(client.ping())
        except redis.RedisError:
            return False


class RedisCluster:
    """Three master nodes, no replicas (enough to exercise cluster clients and key slots)."""

    def __init__(self, state_dir: Path, ports: Sequence[int] | None = None) -> None:
        self.state_dir = Path(state_dir).absolute()
        ports = list(ports) if ports else _cluster_ports(3)
        self.nodes = [
            RedisServer(self.state_dir / f"node-{port}", port, cluster=True, appendonly=False)
            for port in ports
        ]
        for node in self.nodes:
            node.name = f"redis-cluster-{node.port}"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.nodes[0].port}/0"

    def is_running(self) -> bool:
        return all(node.is_running() for node in self.nodes)

    def cluster_info(self) -> dict[str, str]:
        reply = run(
            ["redis-cli", "-h", HOST, "-p", str(self.nodes[0].port), "CLUSTER", "INFO"], timeout=10
        )
        return dict(line.strip().split(":", 1) for line in reply.stdout.splitlines() if ":" in line)

    def check_ready(self) -> bool:
        try:
            return self.cluster_info().get("cluster_state") == "ok"
        except ServerError:
            return False

    def start(self, timeout: float = 60) -> None:
        for node in self.nodes:
            node.start()
        if self.check_ready():
            return
        run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"{host}:{port}" for host, port in self.startup_nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            timeout=timeout,
        )
        if not poll(self.check_ready, timeout):
            raise ServerError(f"redis cluster not ok: {self.cluster_info()}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus ports (port + 10000) are free as well."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + 10000 < 65536 and port not in ports:
            ports.append(port)
    return ports
