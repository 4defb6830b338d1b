"""Runs the five services and the nginx gateway as local processes (``make up``).

The backing services come from :mod:`deploy.local`; this module only needs their addresses.
The same code starts a throwaway platform on free ports for the end-to-end tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from deploy.gateway.render import GatewayConfig, nginx_command, render_nginx_conf
from deploy.local.install import ensure_apt
from deploy.local.process import read_pid, spawn, terminate

# SIGTERM, then SIGKILL after this long: a service's shutdown stops its workers first.
_STOP_TIMEOUT_S = 10.0

SERVICES: tuple[str, ...] = ("auth", "post", "network", "feed", "email")
DEFAULT_PORTS: Mapping[str, int] = {
    "auth": 8001,
    "post": 8002,
    "network": 8003,
    "feed": 8004,
    "email": 8005,
}
# The services the gateway routes to (email_service has no public endpoints).
GATEWAY_SERVICES: tuple[Literal["auth", "post", "network", "feed"], ...] = (
    "auth",
    "post",
    "network",
    "feed",
)


@dataclass(frozen=True)
class Backing:
    """Where the backing services answer."""

    database_urls: Mapping[str, str]  # per service with a database: postgresql+asyncpg:// URL
    redis_url: str  # redis://host:port (no database number)
    amqp_url: str
    neo4j_uri: str
    smtp_host: str
    smtp_port: int


@dataclass
class Platform:
    """The services and the gateway of one run, with their ports, logs and pid files."""

    backing: Backing
    state_dir: Path
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    gateway_port: int = 8080
    environment: str = "development"
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def service_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def env_for(self, service: str) -> dict[str, str]:
        """The environment of one service's process: ours plus its settings."""
        env = dict(os.environ)
        env.update(self.settings_for(service))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def settings_for(self, service: str) -> dict[str, str]:
        """One service's settings, prefixed with its name (``AUTH_DATABASE_URL``, ...)."""
        b = self.backing
        common = {
            "ENVIRONMENT": self.environment,
            "AMQP_URL": b.amqp_url,
            "JWKS_URL": f"{self.service_url('auth')}/.well-known/jwks.json",
            "PUBLIC_BASE_URL": self.gateway_url,
            # The gateway is the only proxy; its X-Forwarded-For is the client's address.
            "TRUSTED_PROXIES": "127.0.0.1",
            "INTERNAL_TOKEN": self._internal_token(),
            # Production behaviour, whatever the caller's environment says (the test suite
            # turns it off for its single-service tests).
            "RELAY_AWAITS_CONSUMER_QUEUES": "true",
        }
        specific: dict[str, str] = {}
        if service in b.database_urls:
            specific["DATABASE_URL"] = b.database_urls[service]
        redis_db = {"auth": 1, "email": 2, "feed": 3, "post": 4, "network": 5}
        if service in redis_db:
            specific["REDIS_URL"] = f"{b.redis_url}/{redis_db[service]}"
        if service == "network":
            specific["NEO4J_URI"] = b.neo4j_uri
        if service == "email":
            specific["SMTP_HOST"] = b.smtp_host
            specific["SMTP_PORT"] = str(b.smtp_port)
        if service == "feed":
            specific["POST_SERVICE_URL"] = self.service_url("post")
            specific["NETWORK_SERVICE_URL"] = self.service_url("network")
            # post_service marks new posts in its Redis (common.write_marks)
            specific["WRITE_MARKS_REDIS_URL"] = f"{b.redis_url}/{redis_db['post']}"
        if service == "auth":
            # A stable development key kept in the state directory, so tokens survive restarts.
            specific["SIGNING_KEY_FILE"] = str(self._dev_signing_key())
        prefix = f"{service.upper()}_"
        settings = {prefix + k: v for k, v in {**common, **specific}.items()}
        settings.update(self.extra_env)
        return settings

    def _internal_token(self) -> str:
        """A random service token per state directory, shared by the five services."""
        path = self.state_dir / "secrets" / "internal-token"
        if not path.exists():
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def _dev_signing_key(self) -> Path:
        path = self.state_dir / "secrets" / "auth-signing-key.pem"
        if not path.exists():
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            path.write_bytes(pem)
            path.chmod(0o600)
        return path

    # -- lifecycle -----------------------------------------------------------------------

    def migrate(self) -> None:
        """Run every service's schema migrations (idempotent)."""
        for service in ("auth", "post", "network"):
            self._run([sys.executable, "-m", f"{service}_service", "migrate"], service)

    def start(self, timeout_s: float = 90.0) -> None:
        """Start every service and the gateway that is not already running; wait until ready."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.migrate()
        for service in SERVICES:
            if not self.is_running(service):
                self.start_service(service)
        self.wait_ready(timeout_s)
        if self.pid_of("gateway") is None:
            ensure_apt("nginx")
            self._start_gateway()
        self._wait_http(f"{self.gateway_url}/.well-known/jwks.json", "gateway", timeout_s)

    def start_service(self, service: str) -> None:
        """Start one service (not waiting for it); subclasses run it another way."""
        self._spawn(
            service,
            [
                sys.executable,
                "-m",
                f"{service}_service",
                "serve",
                "--port",
                str(self.ports[service]),
            ],
            self.env_for(service),
        )

    def is_running(self, name: str) -> bool:
        return self.pid_of(name) is not None

    def log_of(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def restart_service(self, service: str, timeout_s: float = 90.0) -> None:
        """Start one service that is not running, without migrations (its schema is in place,
        e.g. after a crash), and wait until it is ready."""
        if not self.is_running(service):
            self.start_service(service)
        self._wait_http(f"{self.service_url(service)}/readyz", service, timeout_s)

    def stop(self) -> None:
        for name in ("gateway", *reversed(SERVICES)):
            self.stop_service(name)

    def stop_service(self, name: str) -> None:
        """Stop one service (or the gateway); `start` brings it back with the current env."""
        pid = self.pid_of(name)
        if pid is not None:
            terminate(pid, _STOP_TIMEOUT_S)
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)

    def status(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for name in (*SERVICES, "gateway"):
            pid = self.pid_of(name)
            result[name] = f"running (pid {pid})" if pid else "stopped"
        return result

    def wait_ready(self, timeout_s: float) -> None:
        for service in SERVICES:
            self._wait_http(f"{self.service_url(service)}/readyz", service, timeout_s)

    def pid_of(self, name: str) -> int | None:
        pidfile = self.run_dir / f"{name}.pid"
        pid = read_pid(pidfile)
        if pid is None:
            pidfile.unlink(missing_ok=True)
        return pid

    # -- helpers -------------------------------------------------------------------------

    def _run(self, cmd: list[str], service: str) -> None:
        log = self.log_dir / f"{service}-migrate.log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            done = subprocess.run(
                cmd, env=self.env_for(service), stdout=out, stderr=subprocess.STDOUT, check=False
            )
        if done.returncode != 0:
            raise RuntimeError(f"{service} migration failed; see {log}")

    def _spawn(self, name: str, cmd: list[str], env: Mapping[str, str]) -> None:
        proc = spawn(cmd, log=self.log_of(name), env=env)
        (self.run_dir / f"{name}.pid").write_text(str(proc.pid))

    def _start_gateway(self) -> None:
        runtime = self.state_dir / "gateway"
        runtime.mkdir(parents=True, exist_ok=True)
        config = GatewayConfig(
            runtime_dir=str(runtime),
            listen=f"127.0.0.1:{self.gateway_port}",
            upstreams={s: f"127.0.0.1:{self.ports[s]}" for s in GATEWAY_SERVICES},
            daemon=False,
            worker_processes="2",
            error_log=str(self.log_dir / "gateway-error.log"),
            access_log=str(self.log_dir / "gateway-access.log"),
        )
        conf = runtime / "nginx.conf"
        conf.write_text(render_nginx_conf(config))
        self._spawn("gateway", nginx_command(conf, runtime), os.environ)

    def _wait_http(self, url: str, name: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if name in SERVICES and not self.is_running(name):
                raise RuntimeError(f"{name} exited; see {self.log_of(name)}")
            try:
                response = httpx.get(url, timeout=2.0)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.3)
        raise RuntimeError(f"{name} not ready at {url} after {timeout_s:.0f}s ({last})")
