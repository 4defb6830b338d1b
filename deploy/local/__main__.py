"""`python -m deploy.local up|status|down [--only postgres,redis,...]`."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Annotated

import typer

from deploy.local.postgres import PostgresServer
from deploy.local.process import ManagedServer, ServerError
from deploy.local.stack import DATABASES, NAMES, default_servers, state_root

app = typer.Typer(add_completion=False, help="Local backing services for Murmur development.")

OnlyOption = Annotated[
    str | None,
    typer.Option("--only", help=f"Comma-separated subset of: {','.join(NAMES)}"),
]


def _selected(only: str | None) -> dict[str, ManagedServer]:
    servers = default_servers()
    if not only:
        return servers
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(servers))
    if unknown:
        raise typer.BadParameter(f"unknown service(s) {unknown}; choose from {','.join(NAMES)}")
    return {name: servers[name] for name in names}


def _up_one(name: str, server: ManagedServer) -> str:
    began = time.monotonic()
    started = server.start()
    if isinstance(server, PostgresServer):
        created = [db for db in DATABASES if server.create_database(db)]
        extra = f"; created {', '.join(created)}" if created else ""
    else:
        extra = ""
    took = time.monotonic() - began
    if started:
        return f"{name:9} started ({server.describe()}) in {took:.1f}s{extra}"
    return f"{name:9} already running ({server.describe()}){extra}"


@app.command()
def up(only: OnlyOption = None) -> None:
    """Install what is missing, start the servers and wait until each answers."""
    servers = _selected(only)
    typer.echo(f"state in {state_root()}, logs in {state_root() / 'logs'}")
    failed = False
    # Start in parallel: Neo4j and RabbitMQ dominate and do not depend on each other.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(servers)) as pool:
        futures = {pool.submit(_up_one, name, server): name for name, server in servers.items()}
        for future in concurrent.futures.as_completed(futures):
            try:
                typer.echo(future.result())
            except ServerError as exc:
                failed = True
                typer.echo(f"{futures[future]:9} FAILED: {exc}", err=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def status(only: OnlyOption = None) -> None:
    """Print each server's state (exit 3 when any is not running)."""
    all_running = True
    for name, server in _selected(only).items():
        state = server.state()
        pid = server.pid()
        all_running &= state == "running"
        suffix = f"pid {pid}, " if pid else ""
        typer.echo(f"{name:9} {state:13} ({suffix}{server.describe()})")
    if not all_running:
        raise typer.Exit(3)


@app.command()
def down(only: OnlyOption = None) -> None:
    """Stop the servers (data stays in the state directory)."""
    for name, server in _selected(only).items():
        stopped = server.stop()
        typer.echo(f"{name:9} {'stopped' if stopped else 'was not running'}")


if __name__ == "__main__":
    app()
