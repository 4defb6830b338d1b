"""``python -m feed_service serve | worker | migrate | reconcile`` (``common.cli``)."""

from __future__ import annotations

from common.cli import service_cli
from feed_service import SERVICE_NAME, reconcile
from feed_service.settings import FeedSettings

cli = service_cli(
    name=f"{SERVICE_NAME}_service",
    settings=FeedSettings,
    app_module="feed_service.app",
    default_port=8004,
)
# Also ``python -m feed_service.reconcile``.
cli.command("reconcile", help="Compare feeds with the sources of truth and repair drift.")(
    reconcile.main
)

if __name__ == "__main__":
    cli()
