"""Command line: ``python -m auth_service serve | worker | migrate``."""

from __future__ import annotations

import asyncio

import typer

from auth_service.settings import AuthSettings

cli = typer.Typer(add_completion=False, help="Murmur auth_service")


@cli.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8001,
    forwarded_allow_ips: str | None = typer.Option(
        None, help="Proxies trusted for X-Forwarded-For (default: AUTH_TRUSTED_PROXIES)"
    ),
) -> None:
    """Run the HTTP API (and, unless AUTH_RUN_WORKERS=false, the outbox relay)."""
    from auth_service.app import create_app
    from common.server import run_http

    run_http(create_app(), host=host, port=port, trusted_proxies=forwarded_allow_ips)


@cli.command()
def worker() -> None:
    """Run the outbox relay only."""
    from auth_service.app import run_worker
    from common.logging import configure_logging

    settings = AuthSettings()
    configure_logging("auth_service", settings.log_level)
    asyncio.run(run_worker(settings))


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the latest revision."""
    from auth_service.migrations import upgrade

    upgrade(AuthSettings().database_url.get_secret_value())


if __name__ == "__main__":
    cli()
