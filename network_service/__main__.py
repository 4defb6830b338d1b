"""``python -m network_service serve | worker | migrate``."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import typer

from common.logging import configure_logging
from common.server import run_http
from network_service.app import SERVICE_NAME, Workers, create_app
from network_service.repository.driver import Graph, create_driver
from network_service.repository.schema import ensure_schema
from network_service.settings import NetworkSettings

cli = typer.Typer(help="network_service: the follow graph.", no_args_is_help=True)


@cli.command()
def serve(host: str = "127.0.0.1", port: int = 8003) -> None:
    """Run the HTTP API (and, unless NETWORK_RUN_WORKERS=false, the relay and consumer)."""
    run_http(create_app(), host=host, port=port)


@cli.command()
def worker() -> None:
    """Run only the outbox relay and the user-event consumer."""
    settings = NetworkSettings()
    configure_logging(f"{SERVICE_NAME}-worker", settings.log_level)

    async def main() -> None:
        driver = create_driver(settings)
        graph_db = Graph(driver, settings.neo4j_database)
        workers = Workers(settings, graph_db)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await ensure_schema(driver, settings.neo4j_database)
            await workers.start()
            await stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await workers.stop()
            await driver.close()

    asyncio.run(main())


@cli.command()
def migrate() -> None:
    """Create the Neo4j constraints and indexes (idempotent)."""
    settings = NetworkSettings()

    async def main() -> None:
        driver = create_driver(settings)
        try:
            await ensure_schema(driver, settings.neo4j_database)
        finally:
            await driver.close()

    asyncio.run(main())
    typer.echo("neo4j schema is up to date")


if __name__ == "__main__":
    cli()
