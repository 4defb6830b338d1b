"""The five services run from the image, the way the Helm chart runs them.

Each service is one container of the one image: uid 10001, a read-only root filesystem with
only /tmp writable, no capabilities, every setting (signing key included) from environment
variables, migrations run from the image first. Containers share the host's network, so they
reach the backing services on 127.0.0.1 and the gateway (nginx on the host, as in
:mod:`deploy.platform.runner`) reaches them on their ports.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from deploy.image.build import IMAGE, PODMAN, Engine, ImageError
from deploy.platform.runner import SERVICES, Platform

# The services with migrations, as the chart's migration Jobs run them.
MIGRATED: tuple[str, ...] = ("auth", "post", "network")
USER = "10001:10001"


@dataclass
class ContainerPlatform(Platform):
    """A :class:`Platform` whose services are containers of ``image``."""

    image: str = IMAGE
    engine: Engine = PODMAN
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def container_name(self, service: str) -> str:
        return f"murmur-{self.run_id}-{service}"

    def settings_for(self, service: str) -> dict[str, str]:
        settings = super().settings_for(service)
        if service == "auth":
            # The chart passes the key itself (AUTH_SIGNING_KEYS, from its Secret), not a file.
            key_file = Path(settings.pop("AUTH_SIGNING_KEY_FILE"))
            settings["AUTH_SIGNING_KEYS"] = key_file.read_text()
        return settings

    def container_env(self, service: str) -> dict[str, str]:
        """What the chart's Deployment sets: its ConfigMap and Secret plus SERVICE_PORT."""
        env = self.settings_for(service)
        env["SERVICE_PORT"] = str(self.ports[service])
        env[f"{service.upper()}_RUN_WORKERS"] = "true"
        return env

    # -- lifecycle -----------------------------------------------------------------------

    def migrate(self) -> None:
        for service in MIGRATED:
            done = self._engine_run(
                service,
                ["--rm"],
                ["python", "-m", f"{service}_service", "migrate"],
                name=f"{self.container_name(service)}-migrate",
            )
            log = self.log_dir / f"{service}-migrate.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(done.stdout + done.stderr)
            if done.returncode != 0:
                raise ImageError(
                    f"{service} migration failed: {(done.stderr or done.stdout)[-1500:]}"
                )

    def start_service(self, service: str) -> None:
        name = self.container_name(service)
        self.engine.run("rm", "--force", name, check=False, timeout=120)
        # 127.0.0.1, not the chart's 0.0.0.0: on the host network that would be every interface.
        command = ["python", "-m", f"{service}_service", "serve", "--host", "127.0.0.1"]
        done = self._engine_run(
            service, ["--detach"], [*command, "--port", str(self.ports[service])], name=name
        )
        if done.returncode != 0:
            raise ImageError(f"{service} container did not start: {done.stderr.strip()[-1500:]}")

    def is_running(self, name: str) -> bool:
        if name not in SERVICES:
            return super().is_running(name)
        done = self.engine.run(
            "container",
            "inspect",
            "--format",
            "{{.State.Running}}",
            self.container_name(name),
            check=False,
            timeout=60,
        )
        return done.returncode == 0 and done.stdout.strip() == "true"

    def stop_service(self, name: str) -> None:
        if name not in SERVICES:
            super().stop_service(name)
            return
        container = self.container_name(name)
        self.save_log(name)
        self.engine.run("rm", "--force", container, check=False, timeout=120)

    def stop(self) -> None:
        """Stop the gateway and remove every container of this run, whatever state it is in."""
        try:
            super().stop()
        finally:
            listed = self.engine.run(
                "ps", "--all", "--quiet", "--filter", f"label=murmur.run={self.run_id}", check=False
            )
            leftover = listed.stdout.split()
            if leftover:
                self.engine.run("rm", "--force", *leftover, check=False, timeout=120)

    def save_log(self, service: str) -> Path:
        """The container's output so far, in the log file a process would have written."""
        log = self.log_of(service)
        log.parent.mkdir(parents=True, exist_ok=True)
        done = self.engine.run("logs", self.container_name(service), check=False, timeout=60)
        log.write_text(done.stdout + done.stderr)
        return log

    # -- checks --------------------------------------------------------------------------

    def healthcheck_command(self) -> list[str]:
        """The image's HEALTHCHECK command (``CMD`` form), as its config records it."""
        done = self.engine.run(
            "image", "inspect", "--format", "{{json .Config.Healthcheck}}", self.image
        )
        check = json.loads(done.stdout)
        if not check or check.get("Test", [None])[0] != "CMD":
            raise ImageError(f"{self.image} has no HEALTHCHECK CMD: {done.stdout.strip()}")
        return [str(arg) for arg in check["Test"][1:]]

    def run_healthcheck(self, service: str) -> bool:
        """The engine's own health check of the running container (podman), else the command."""
        container = self.container_name(service)
        if self.engine.name == "podman":
            done = self.engine.run("healthcheck", "run", container, check=False, timeout=60)
        else:
            done = self.exec(service, self.healthcheck_command())
        return done.returncode == 0

    def exec(
        self, service: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        flags = [arg for key, value in (env or {}).items() for arg in ("--env", f"{key}={value}")]
        return self.engine.run(
            "exec", *flags, self.container_name(service), *command, check=False, timeout=60
        )

    # -- helpers -------------------------------------------------------------------------

    def _engine_run(
        self, service: str, flags: list[str], command: list[str], name: str
    ) -> subprocess.CompletedProcess[str]:
        env = self.container_env(service)
        # `--env NAME` takes the value from the engine's own environment: secrets stay off
        # command lines (visible to every user in ps).
        env_flags = [arg for key in sorted(env) for arg in ("--env", key)]
        read_only = ["--read-only"]
        if self.engine.name == "podman":
            read_only.append("--read-only-tmpfs=false")  # only /tmp, as the chart mounts
        args = [
            "run",
            *flags,
            "--name",
            name,
            "--label",
            f"murmur.run={self.run_id}",
            "--user",
            USER,
            *read_only,
            "--tmpfs",
            "/tmp:rw,size=64m,mode=1777",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--network",
            "host",
            *self.engine.limits,
            *env_flags,
            self.image,
            *command,
        ]
        return self.engine.run(*args, check=False, timeout=600, env={**os.environ, **env})
