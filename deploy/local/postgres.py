"""PostgreSQL 15 in a private data directory, trust auth on loopback (development only)."""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from deploy.local import install
from deploy.local.process import HOST, ManagedServer, ServerError, run

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Where the data goes when the postgres user cannot reach the state directory (a clone under
# /root or any `mktemp -d`, both 0700): one directory per state directory, owned by postgres.
RELOCATED_ROOT = Path(os.environ.get("MURMUR_PG_RELOCATED_ROOT", "/var/lib/murmur"))
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresServer(ManagedServer):
    """PostgreSQL with superuser `user` reachable without a password from 127.0.0.1.

    PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user. When
    that user cannot reach `state_dir` (a parent is private to root), the data directory and
    the socket go to `RELOCATED_ROOT/<name>-<hash of state_dir>` instead, and `state_dir`
    records where (`DATA_LOCATION`), so status and later starts find it.
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
    def location_file(self) -> Path:
        return self.state_dir / "DATA_LOCATION"

    @property
    def data_root(self) -> Path:
        """The directory holding `data/` and `run/`: `state_dir` unless relocated."""
        try:
            return Path(self.location_file.read_text().strip())
        except OSError:
            return self.state_dir

    @property
    def relocated(self) -> bool:
        return self.data_root != self.state_dir

    @property
    def data_dir(self) -> Path:
        return self.data_root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.data_root / "run"

    def describe(self) -> str:
        where = f", data in {self.data_dir}"
        if self.relocated:
            where += f" (relocated: the postgres user cannot reach {self.state_dir})"
        return super().describe() + where

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{HOST}:{self.port}/{database}"

    def run_as(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def _chown(self, path: Path) -> None:
        owner = self.run_as()
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _reachable(self, owner: str, path: Path) -> bool:
        return run(["test", "-w", str(path)], user=owner, check=False).returncode == 0

    def _choose_data_root(self, owner: str | None) -> None:
        """Relocate the data when `owner` cannot write the state directory."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.state_dir)
        if owner is None or self._reachable(owner, self.state_dir):
            self.location_file.unlink(missing_ok=True)
            return
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        root = RELOCATED_ROOT / f"{self.name}-{digest}"
        RELOCATED_ROOT.mkdir(parents=True, exist_ok=True, mode=0o755)
        root.mkdir(exist_ok=True, mode=0o700)
        self._chown(root)
        if not self._reachable(owner, root):
            raise ServerError(
                f"user {owner} can reach neither {self.state_dir} nor {root}: set "
                "MURMUR_STATE_DIR (or MURMUR_PG_RELOCATED_ROOT) to a directory whose parents "
                "are world-traversable"
            )
        self.location_file.write_text(f"{root}\n")

    def prepare(self) -> None:
        install.ensure_apt("postgresql")
        owner = self.run_as()
        self._choose_data_root(owner)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.socket_dir)
        self.logfile.touch()
        self._chown(self.logfile)
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
