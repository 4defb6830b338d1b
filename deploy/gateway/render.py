"""Renders the gateway's nginx configuration from the routing table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from deploy.gateway.routes import DEFAULT_PORTS, ROUTED_SERVICES, ROUTES, ServiceName

_TEMPLATE_DIR = Path(__file__).parent


def default_upstreams(host: str = "127.0.0.1") -> dict[ServiceName, str]:
    return {service: f"{host}:{DEFAULT_PORTS[service]}" for service in ROUTED_SERVICES}


@dataclass(frozen=True)
class GatewayConfig:
    """What varies between a local run, a container and a test."""

    runtime_dir: str = "/tmp/murmur-gateway"
    listen: str = "127.0.0.1:8080"
    upstreams: Mapping[ServiceName, str] = field(default_factory=default_upstreams)
    # None leaves nginx's default (daemon on); False suits supervisors and containers.
    daemon: bool | None = False
    worker_processes: str = "auto"
    error_log: str | None = None
    access_log: str | None = None
    log_level: str = "warn"


def render_nginx_conf(config: GatewayConfig) -> str:
    missing = set(ROUTED_SERVICES) - set(config.upstreams)
    if missing:
        raise ValueError(f"no upstream for: {', '.join(sorted(missing))}")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - nginx syntax, not HTML; values come from our own table
    )
    template = env.get_template("nginx.conf.j2")
    return template.render(
        routes=ROUTES,
        upstreams={s: config.upstreams[s] for s in ROUTED_SERVICES},
        listen=config.listen,
        runtime_dir=config.runtime_dir,
        daemon=config.daemon,
        worker_processes=config.worker_processes,
        error_log=config.error_log or f"{config.runtime_dir}/error.log",
        access_log=config.access_log or f"{config.runtime_dir}/access.log",
        log_level=config.log_level,
    )


def nginx_command(conf_file: Path, runtime_dir: Path) -> list[str]:
    """The command line that runs nginx on a rendered file without touching /var or /etc."""
    return [
        "nginx",
        "-p",
        str(runtime_dir),
        "-e",
        str(runtime_dir / "error.log"),
        "-c",
        str(conf_file),
    ]


# The config committed as deploy/gateway/nginx.compose.conf (for nginxinc/nginx-unprivileged,
# whose command already passes `-g 'daemon off;'`). Regenerate with `python -m deploy.gateway
# render --preset compose --out deploy/gateway/nginx.compose.conf`.
COMPOSE_CONFIG = GatewayConfig(
    runtime_dir="/tmp",
    listen="0.0.0.0:8080",
    upstreams={
        "auth": "auth:8001",
        "post": "post:8002",
        "network": "network:8003",
        "feed": "feed:8004",
    },
    daemon=None,
    worker_processes="2",
    error_log="/dev/stderr",
    access_log="/dev/stdout",
)
