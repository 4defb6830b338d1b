"""RabbitMQ 3.10 with the management plugin, as a private node in its own directory."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

import aio_pika
import httpx

from deploy.local import install
from deploy.local.process import HOST, ManagedServer, run

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
GUEST = ("guest", "guest")


class RabbitMQServer(ManagedServer):
    """A RabbitMQ node named `murmur-<port>@localhost` with its own epmd.

    `stop()` then `start()` keeps ports, node name and the Mnesia directory, so durable queues
    and messages survive (tests use it to simulate a broker outage).
    """

    name = "rabbitmq"
    start_timeout = 120.0
    stop_timeout = 60.0

    def __init__(
        self,
        state_dir: Path,
        port: int = 5672,
        management_port: int = 15672,
        log_dir: Path | None = None,
        *,
        dist_port: int | None = None,
        epmd_port: int = 4369,
    ) -> None:
        super().__init__(state_dir, log_dir)
        self.port = port
        self.management_port = management_port
        self.dist_port = dist_port if dist_port is not None else port + 20000
        self.epmd_port = epmd_port

    @property
    def ports(self) -> dict[str, int]:
        return {"amqp": self.port, "management": self.management_port}

    @property
    def nodename(self) -> str:
        return f"murmur-{self.port}@localhost"

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{self.port}/"

    def vhost_url(self, vhost: str) -> str:
        return f"amqp://guest:guest@{HOST}:{self.port}/{vhost}"

    @property
    def management_url(self) -> str:
        return f"http://{HOST}:{self.management_port}"

    def environment(self) -> Mapping[str, str]:
        return {
            **os.environ,
            # The Erlang cookie is created in HOME: keep it private to this node.
            "HOME": str(self.state_dir),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": HOST,
            "RABBITMQ_MNESIA_BASE": str(self.state_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir / "rabbitmq"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.state_dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.state_dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.state_dir / "advanced.config"),
            # Ignore the system-wide /etc/rabbitmq/rabbitmq-env.conf.
            "RABBITMQ_CONF_ENV_FILE": str(self.state_dir / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.state_dir / "rabbitmq.pid"),
        }

    def prepare(self) -> None:
        install.ensure_apt("rabbitmq-server")
        (self.log_dir / "rabbitmq").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.state_dir / "advanced.config").write_text("[].\n")
        (self.state_dir / "rabbitmq-env.conf").write_text("")
        (self.state_dir / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.default = {HOST}:{self.port}",
                    f"management.tcp.ip = {HOST}",
                    f"management.tcp.port = {self.management_port}",
                    "disk_free_limit.absolute = 50MB",
                    "log.console = true",
                    "log.console.level = info",
                    "log.file = false",
                ]
            )
            + "\n"
        )

    def command(self) -> Sequence[str]:
        return [RABBITMQ_SERVER]

    def check_ready(self) -> bool:
        return self._management_ready() and self._amqp_ready()

    def _management_ready(self) -> bool:
        try:
            response = httpx.get(f"{self.management_url}/api/overview", auth=GUEST, timeout=3)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _amqp_ready(self) -> bool:
        async def probe() -> None:
            connection = await aio_pika.connect(self.amqp_url, timeout=3)
            async with connection:
                channel = await connection.channel()
                await channel.close()

        # A worker thread with its own event loop: works whether or not the caller is inside
        # a running loop (tests call start() from async tests).
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            try:
                pool.submit(asyncio.run, probe()).result(timeout=10)
            except Exception:
                return False
        return True

    def create_vhost(self, vhost: str) -> str:
        """Create `vhost`, give guest all permissions on it, and return its amqp URL."""
        base = f"{self.management_url}/api"
        with httpx.Client(auth=GUEST, timeout=10) as client:
            name = quote(vhost, safe="")
            client.put(f"{base}/vhosts/{name}").raise_for_status()
            client.put(
                f"{base}/permissions/{name}/guest",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ).raise_for_status()
        return self.vhost_url(name)

    def after_stop(self) -> None:
        # epmd daemonises out of the node's process group; end the one on this node's own
        # port when no other node uses it (epmd refuses -kill while names are registered).
        if self.epmd_port != 4369:
            run(["epmd", "-port", str(self.epmd_port), "-kill"], check=False, timeout=10)
