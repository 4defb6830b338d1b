"""Command line: ``python -m email_service serve | worker | migrate`` (``common.cli``)."""

from __future__ import annotations

from common.cli import service_cli
from email_service import SERVICE_NAME
from email_service.settings import EmailSettings

cli = service_cli(
    name=f"{SERVICE_NAME}_service",
    settings=EmailSettings,
    app_module="email_service.app",
    default_port=8005,
)

if __name__ == "__main__":
    cli()
