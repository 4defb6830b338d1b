"""Detached server processes with pidfiles, logs and readiness polling.

Every backing server (PostgreSQL, Redis, RabbitMQ, Neo4j, Mailpit) is one `ManagedServer`: the
same class serves `python -m deploy.local up` (default ports, state kept in `.murmur/`) and the
test suite (free ports, temporary directories). The process primitives below (`spawn`,
`read_pid`, `terminate`) also run the services and the gateway (`deploy.platform.runner`).
"""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A server could not be installed, started or stopped."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def pid_alive(pid: int) -> bool:
    # Our own exited child is reaped here: unreaped, it would linger as a zombie.
    with contextlib.suppress(ChildProcessError):
        reaped, _status = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) answers kill(0) but is not running.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def poll(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Call `check` until it returns True or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def spawn(
    cmd: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` detached, its output appended to ``log``.

    A new session: the process survives the command that started it and does not get the
    terminal's Ctrl-C; ``terminate`` signals the whole process group. Our copy of the log's
    descriptor is closed once the child has its own.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            user=user,
        )


def read_pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` if that process still runs."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def signal_group(pid: int, sig: signal.Signals) -> None:
    # The process leads its own group (spawn), so its helpers get the signal too; fall back
    # to the pid alone when the group is gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            os.kill(pid, sig)


def terminate(pid: int, timeout_s: float) -> bool:
    """SIGTERM to the process group, SIGKILL after ``timeout_s``. False if it was not running."""
    if not pid_alive(pid):
        return False
    signal_group(pid, signal.SIGTERM)
    if not poll(lambda: not pid_alive(pid), timeout_s, interval=0.1):
        signal_group(pid, signal.SIGKILL)
        poll(lambda: not pid_alive(pid), 10, interval=0.1)
    return True


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ManagedServer(abc.ABC):
    """One server process started detached, with `<name>.pid` and `<name>.log` in `log_dir`."""

    name: str = "server"
    start_timeout: float = 60.0
    stop_timeout: float = 30.0

    def __init__(self, state_dir: Path, log_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.log_dir = Path(log_dir).absolute() if log_dir else self.state_dir / "logs"
        self._proc: subprocess.Popen[bytes] | None = None

    # --- what each server defines -------------------------------------------------------
    @property
    @abc.abstractmethod
    def ports(self) -> dict[str, int]:
        """Named ports this server listens on (all on 127.0.0.1)."""

    @abc.abstractmethod
    def command(self) -> Sequence[str]:
        """The foreground command that runs the server."""

    @abc.abstractmethod
    def check_ready(self) -> bool:
        """One real protocol round trip; True when the server answers it."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Create directories and configuration before the first start."""

    def environment(self) -> Mapping[str, str]:
        return os.environ

    def run_as(self) -> str | None:
        """User to run the process as (None: the current user)."""
        return None

    def describe(self) -> str:
        return ", ".join(f"{key} {port}" for key, port in self.ports.items())

    # --- shared behaviour -----------------------------------------------------------------
    @property
    def pidfile(self) -> Path:
        return self.log_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        return read_pid(self.pidfile)

    def is_running(self) -> bool:
        return self.pid() is not None

    def state(self) -> str:
        if not self.is_running():
            return "stopped"
        return "running" if self.check_ready() else "not answering"

    def start(self, timeout: float | None = None) -> bool:
        """Start and wait until the server answers. False if it was already running."""
        if self.is_running():
            if not poll(self.check_ready, timeout or self.start_timeout):
                raise ServerError(f"{self.name} is running (pid {self.pid()}) but not answering")
            return False
        busy = [port for port in self.ports.values() if port_in_use(port)]
        if busy:
            raise ServerError(f"{self.name}: port(s) {busy} already in use by another process")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        self._spawn()
        self._wait_ready(timeout or self.start_timeout)
        return True

    def _spawn(self) -> None:
        self._proc = spawn(
            self.command(),
            log=self.logfile,
            env=self.environment(),
            cwd=self.state_dir,
            user=self.run_as(),
        )
        self.pidfile.write_text(f"{self._proc.pid}\n")

    def _wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            if not self.is_running():
                raise ServerError(
                    f"{self.name} exited during start-up; log {self.logfile}:\n{tail(self.logfile)}"
                )
            return self.check_ready()

        if not poll(ready, timeout, interval=0.25):
            self.stop()
            raise ServerError(
                f"{self.name} did not answer within {timeout:.0f}s; log {self.logfile}:\n"
                f"{tail(self.logfile)}"
            )

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the server (SIGTERM, then SIGKILL). False if it was not running."""
        pid = self.pid()
        if pid is None:
            self._reap()
            self.pidfile.unlink(missing_ok=True)
            return False
        terminate(pid, timeout or self.stop_timeout)
        self._reap()
        self.after_stop()
        self.pidfile.unlink(missing_ok=True)
        return True

    def after_stop(self) -> None:  # noqa: B027 - optional hook
        """Clean up helpers the server left behind."""

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None


def run(
    args: Sequence[str],
    *,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a short command, capturing its output; raise ServerError with it on failure."""
    try:
        result = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            user=user,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{' '.join(args)} timed out after {timeout:.0f}s") from exc
    if check and result.returncode != 0:
        raise ServerError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result
