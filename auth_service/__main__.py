"""Command line: ``python -m auth_service serve | worker | migrate`` (``common.cli``)."""

from __future__ import annotations

from auth_service import SERVICE_NAME
from auth_service.settings import AuthSettings
from common.cli import service_cli


def _migrate(settings: AuthSettings) -> str:
    from auth_service.migrations import upgrade

    upgrade(settings.database_url.get_secret_value())
    return ""


cli = service_cli(
    name=f"{SERVICE_NAME}_service",
    settings=AuthSettings,
    app_module="auth_service.app",
    default_port=8001,
    migrate=_migrate,
)

if __name__ == "__main__":
    cli()
