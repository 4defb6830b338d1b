"""``python -m network_service serve | worker | migrate`` (``common.cli``)."""

from __future__ import annotations

import asyncio

from common.cli import service_cli
from network_service import SERVICE_NAME
from network_service.repository.driver import create_driver
from network_service.repository.schema import ensure_schema
from network_service.settings import NetworkSettings


def _migrate(settings: NetworkSettings) -> str:
    """Create the Neo4j constraints and indexes (idempotent)."""

    async def main() -> None:
        driver = create_driver(settings)
        try:
            await ensure_schema(driver, settings.neo4j_database)
        finally:
            await driver.close()

    asyncio.run(main())
    return "neo4j schema is up to date"


cli = service_cli(
    name=f"{SERVICE_NAME}_service",
    settings=NetworkSettings,
    app_module="network_service.app",
    default_port=8003,
    migrate=_migrate,
    help="network_service: the follow graph.",
)

if __name__ == "__main__":
    cli()
