"""Command line: ``python -m email_service serve | worker``."""

from __future__ import annotations

import asyncio

import typer

from email_service.settings import EmailSettings

cli = typer.Typer(add_completion=False, help="Murmur email_service")


@cli.command()
def serve(host: str = "127.0.0.1", port: int = 8005) -> None:
    """Health and metrics endpoints plus (unless EMAIL_RUN_WORKERS=false) the consumer."""
    from common.server import run_http
    from email_service.app import create_app

    run_http(create_app(), host=host, port=port)


@cli.command()
def worker() -> None:
    """Run the event consumer only."""
    from common.logging import configure_logging
    from email_service.app import run_worker

    settings = EmailSettings()
    configure_logging("email_service", settings.log_level)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    cli()
