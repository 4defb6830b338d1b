"""Renders the gateway's nginx configuration from the routing table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from common.server import KEEP_ALIVE_TIMEOUT_S
from deploy.gateway.routes import DEFAULT_PORTS, ROUTED_SERVICES, ROUTES, ServiceName

_TEMPLATE_DIR = Path(__file__).parent
# nginx closes idle upstream connections before uvicorn does (see common.server).
UPSTREAM_KEEPALIVE_TIMEOUT_S = KEEP_ALIVE_TIMEOUT_S - 15


@dataclass(frozen=True)
class GatewayError:
    """An error nginx answers itself, as a problem+json body from a named location."""

    statuses: tuple[int, ...]
    status: int
    title: str
    detail: str
    retry_after_s: int | None = None

    @property
    def location(self) -> str:
        # An `internal` location: a client asking for it directly gets the 404 problem.
        return f"/_gateway/problem/{self.statuses[0]}"


# 494 is nginx's internal code for an oversized header; it is sent as 400 unless an error page
# answers it, as here, with the standard 431.
GATEWAY_ERRORS: tuple[GatewayError, ...] = (
    GatewayError((400,), 400, "Bad Request", "The request is malformed."),
    GatewayError((405,), 405, "Method Not Allowed", "Method not allowed here."),
    GatewayError((408,), 408, "Request Timeout", "The request was not received in time."),
    GatewayError((413,), 413, "Content Too Large", "Request body over 1 MiB."),
    GatewayError((414,), 414, "URI Too Long", "The request URI is too long."),
    GatewayError((494,), 431, "Request Header Fields Too Large", "Request headers too large."),
    GatewayError((500,), 500, "Internal Server Error", "The gateway failed."),
    GatewayError(
        (502, 503),
        503,
        "Service Unavailable",
        "The service is not reachable; retry later.",
        retry_after_s=5,
    ),
    GatewayError(
        (504,), 504, "Gateway Timeout", "The service did not answer in time.", retry_after_s=5
    ),
)


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
        upstream_keepalive_timeout_s=UPSTREAM_KEEPALIVE_TIMEOUT_S,
        errors=GATEWAY_ERRORS,
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
