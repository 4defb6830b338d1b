"""``python -m post_service serve | worker | migrate`` (``common.cli``)."""

from __future__ import annotations

from common.cli import service_cli
from post_service import SERVICE_NAME
from post_service.settings import PostSettings


def _migrate(settings: PostSettings) -> str:
    from post_service.migrations import upgrade

    upgrade(settings.database_url.get_secret_value())
    return ""


cli = service_cli(
    name=f"{SERVICE_NAME}_service",
    settings=PostSettings,
    app_module="post_service.app",
    default_port=8002,
    migrate=_migrate,
)

if __name__ == "__main__":
    cli()
