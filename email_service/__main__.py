"""Command line: ``python -m email_service serve | worker | migrate`` (``common.cli``)."""

from __future__ import annotations

from common.cli import service_cli
from email_service.app import create_app, lifespan
from email_service.settings import EmailSettings

cli = service_cli(
    name="email_service",
    settings=EmailSettings,
    create_app=create_app,
    lifespan=lifespan,
    default_port=8005,
)

if __name__ == "__main__":
    cli()
