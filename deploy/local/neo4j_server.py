"""Neo4j 5.26 Community, embedded in a small Java launcher, with Bolt on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import neo4j
import neo4j.exceptions

from deploy.local import install
from deploy.local.process import HOST, ManagedServer


class Neo4jServer(ManagedServer):
    """Bolt without authentication; one user database (`neo4j`), kept in `state_dir`."""

    name = "neo4j"
    start_timeout = 180.0
    stop_timeout = 60.0

    def __init__(
        self,
        state_dir: Path,
        port: int = 7687,
        log_dir: Path | None = None,
        *,
        heap: str = "1g",
        page_cache_mb: int = 64,
        version: str = install.NEO4J_VERSION,
    ) -> None:
        super().__init__(state_dir, log_dir)
        self.port = port
        self.heap = heap
        self.page_cache_mb = page_cache_mb
        self.version = version
        self._classpath: str | None = None

    @property
    def ports(self) -> dict[str, int]:
        return {"bolt": self.port}

    @property
    def bolt_uri(self) -> str:
        return f"bolt://{HOST}:{self.port}"

    def prepare(self) -> None:
        self._classpath = install.ensure_neo4j_launcher(self.version)

    def command(self) -> Sequence[str]:
        if self._classpath is None:
            self._classpath = install.ensure_neo4j_launcher(self.version)
        return [
            str(install.java_bin()),
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            # The flags Neo4j's own start script passes (Netty and the page cache need them).
            "--add-opens=java.base/java.nio=ALL-UNNAMED",
            "--add-opens=java.base/java.io=ALL-UNNAMED",
            "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
            "-Dio.netty.tryReflectionSetAccessible=true",
            "-cp",
            self._classpath,
            "murmur.neo4j.Launcher",
            str(self.state_dir),
            str(self.port),
            str(self.page_cache_mb * 1024 * 1024),
        ]

    def check_ready(self) -> bool:
        # A session's run() does not retry (execute_query would back off for up to 30s).
        try:
            with (
                neo4j.GraphDatabase.driver(self.bolt_uri, connection_timeout=3) as driver,
                driver.session() as session,
            ):
                record = session.run("RETURN 1 AS one").single()
                return record is not None and record["one"] == 1
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError):
            return False
