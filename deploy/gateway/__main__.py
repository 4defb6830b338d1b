"""`python -m deploy.gateway render --out FILE [--upstream auth=HOST:PORT ...] [--listen ...]`."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from deploy.gateway.render import (
    COMPOSE_CONFIG,
    GatewayConfig,
    default_upstreams,
    render_nginx_conf,
)
from deploy.gateway.routes import ROUTED_SERVICES, ROUTES, ServiceName, ingress_routes


class Daemon(StrEnum):
    on = "on"
    off = "off"
    unset = "unset"


app = typer.Typer(add_completion=False, no_args_is_help=True)


def _parse_upstreams(values: list[str]) -> dict[ServiceName, str]:
    upstreams = default_upstreams()
    for value in values:
        service, sep, address = value.partition("=")
        if not sep or service not in ROUTED_SERVICES or not address:
            choices = ", ".join(ROUTED_SERVICES)
            raise typer.BadParameter(f"{value!r}: expected SERVICE=HOST:PORT, SERVICE in {choices}")
        upstreams[service] = address
    return upstreams


@app.command()
def render(
    out: Annotated[Path, typer.Option(help="Where to write nginx.conf ('-' for stdout).")],
    upstream: Annotated[
        list[str] | None,
        typer.Option(help="SERVICE=HOST:PORT, repeatable (default 127.0.0.1:800N)."),
    ] = None,
    listen: Annotated[str, typer.Option(help="nginx listen address.")] = "127.0.0.1:8080",
    runtime_dir: Annotated[
        str, typer.Option(help="Directory for the pid file, temp files and default logs.")
    ] = "/tmp/murmur-gateway",
    daemon: Annotated[
        Daemon,
        typer.Option(help="'off' for supervisors; 'unset' when the command line sets it (-g)."),
    ] = Daemon.off,
    error_log: Annotated[str | None, typer.Option(help="Error log (e.g. /dev/stderr).")] = None,
    access_log: Annotated[str | None, typer.Option(help="Access log (e.g. /dev/stdout).")] = None,
    worker_processes: Annotated[str, typer.Option(help="nginx worker_processes.")] = "auto",
    preset: Annotated[
        str | None, typer.Option(help="'compose': the config for deploy/compose.yaml.")
    ] = None,
) -> None:
    """Render the gateway's nginx.conf from the routing table."""
    if preset not in (None, "compose"):
        raise typer.BadParameter(f"unknown preset {preset!r}")
    config = (
        COMPOSE_CONFIG
        if preset == "compose"
        else GatewayConfig(
            runtime_dir=runtime_dir,
            listen=listen,
            upstreams=_parse_upstreams(upstream or []),
            daemon={Daemon.on: True, Daemon.off: False, Daemon.unset: None}[daemon],
            error_log=error_log,
            access_log=access_log,
            worker_processes=worker_processes,
        )
    )
    text = render_nginx_conf(config)
    if str(out) == "-":
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


@app.command("export-ingress")
def export_ingress(
    out: Annotated[Path, typer.Option(help="Usually deploy/helm/murmur/files/routes.json.")],
) -> None:
    """Write the table in the form the Helm chart's Ingress template reads."""
    out.write_text(json.dumps(ingress_routes(), indent=2) + "\n")


@app.command()
def routes() -> None:
    """Print the routing table as JSON (pattern, service, streaming)."""
    rows = [
        {"name": r.name, "pattern": r.pattern, "service": r.service, "streaming": r.streaming}
        for r in ROUTES
    ]
    typer.echo(json.dumps(rows, indent=2))


if __name__ == "__main__":
    app()
