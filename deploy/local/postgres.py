"""PostgreSQL 15 in a private data directory, trust auth on loopback (development only)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from deploy.local import install
from deploy.local.process import HOST, ManagedServer, ServerError, run

PG_BIN = Path("/usr/lib/postgresql/15/bin")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresServer(ManagedServer):
    """PostgreSQL with superuser `user` reachable without a password from 127.0.0.1.

    PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user and
    `state_dir` (with its parents) must be reachable by that user.
    """

    name = "postgres"

    def __init__(
        self,
        state_dir: Path,
        port: int = 5432,
        log_dir: Path | None = None,
        user: str = "murmur",
    ) -> None:
        super().__init__(state_dir, log_dir)
        self.port = port
        self.user = user

    @property
    def ports(self) -> dict[str, int]:
        return {"port": self.port}

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.state_dir / "run"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{HOST}:{self.port}/{database}"

    def run_as(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def _chown(self, path: Path) -> None:
        owner = self.run_as()
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def prepare(self) -> None:
        install.ensure_apt("postgresql")
        for path in (self.state_dir, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            self._chown(path)
        self.logfile.touch()
        self._chown(self.logfile)
        owner = self.run_as()
        if (
            owner is not None
            and run(["test", "-w", str(self.state_dir)], user=owner, check=False).returncode
        ):
            raise ServerError(
                f"user {owner} cannot write {self.state_dir}: choose a state directory whose "
                "parents are world-traversable"
            )
        if not (self.data_dir / "PG_VERSION").exists():
            shutil.rmtree(self.data_dir, ignore_errors=True)
            run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                user=owner,
            )

    def command(self) -> Sequence[str]:
        return [
            str(PG_BIN / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-h",
            HOST,
            "-k",
            str(self.socket_dir),
            # Development settings: fsync off trades crash safety for speed.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
        ]

    def check_ready(self) -> bool:
        result = run(
            ["psql", "-X", "-q", "-t", "-A", "-d", self.dsn(), "-c", "SELECT 1"],
            env={**os.environ, "PGCONNECT_TIMEOUT": "2"},
            timeout=10,
            check=False,
        )
        return result.returncode == 0 and result.stdout.strip() == "1"

    def create_database(self, name: str) -> bool:
        """Create database `name` unless it exists. True when it was created."""
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        exists = run(
            [
                "psql",
                "-X",
                "-t",
                "-A",
                "-d",
                self.dsn(),
                "-c",
                # The name matched _IDENTIFIER above, so inlining it is safe.
                f"SELECT 1 FROM pg_database WHERE datname = '{name}'",  # noqa: S608
            ],
            timeout=30,
        )
        if exists.stdout.strip() == "1":
            return False
        run(["psql", "-X", "-q", "-d", self.dsn(), "-c", f'CREATE DATABASE "{name}"'], timeout=60)
        return True
