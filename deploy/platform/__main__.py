"""``python -m deploy.platform up|down|status``: the services and the gateway of ``make up``."""

from __future__ import annotations

from pathlib import Path

import typer

from deploy.platform.runner import DEFAULT_PORTS, Backing, Platform

cli = typer.Typer(add_completion=False, no_args_is_help=True)

STATE_DIR = Path(__file__).resolve().parents[2] / ".murmur" / "platform"

# The development backing services of `python -m deploy.local up`, at the ports of api.md.
DEV_BACKING = Backing(
    database_urls={
        "auth": "postgresql+asyncpg://murmur@127.0.0.1:5432/murmur_auth",
        "post": "postgresql+asyncpg://murmur@127.0.0.1:5432/murmur_post",
    },
    redis_url="redis://127.0.0.1:6379",
    amqp_url="amqp://guest:guest@127.0.0.1:5672/",
    neo4j_uri="bolt://127.0.0.1:7687",
    smtp_host="127.0.0.1",
    smtp_port=1025,
)


def _platform() -> Platform:
    return Platform(backing=DEV_BACKING, state_dir=STATE_DIR)


@cli.command()
def up() -> None:
    """Migrate, start the five services and the gateway, wait until all are ready."""
    platform = _platform()
    platform.start()
    logs = platform.log_dir
    typer.echo("Murmur is up.")
    typer.echo(f"  gateway           {platform.gateway_url}")
    for service, port in DEFAULT_PORTS.items():
        typer.echo(f"  {service + '_service':<17} http://127.0.0.1:{port}/docs")
    typer.echo("  Mailpit (inbox)   http://127.0.0.1:8025")
    typer.echo("  RabbitMQ          http://127.0.0.1:15672 (guest/guest)")
    typer.echo(f"  logs              {logs}")


@cli.command()
def down() -> None:
    """Stop the services and the gateway."""
    _platform().stop()
    typer.echo("services and gateway stopped")


@cli.command()
def status() -> None:
    for name, state in _platform().status().items():
        typer.echo(f"{name:<10} {state}")


if __name__ == "__main__":
    cli()
