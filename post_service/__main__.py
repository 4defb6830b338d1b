"""``python -m post_service serve|worker|migrate``."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import typer

from post_service.settings import PostSettings

cli = typer.Typer(add_completion=False, no_args_is_help=True)


@cli.command()
def serve(host: str = "127.0.0.1", port: int = 8002) -> None:
    """HTTP API (plus consumer and relay unless POST_RUN_WORKERS=false)."""
    from common.server import run_http
    from post_service.app import create_app

    run_http(create_app(), host=host, port=port)


@cli.command()
def worker() -> None:
    """Consumer and outbox relay only, no HTTP."""
    from common.db import create_engine, session_factory
    from common.logging import configure_logging
    from post_service.app import run_workers

    settings = PostSettings()
    configure_logging("post_service", settings.log_level)

    async def main() -> None:
        engine = create_engine(settings.database_url.get_secret_value())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with run_workers(settings, engine, session_factory(engine)):
                await stop.wait()
        finally:
            await engine.dispose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@cli.command()
def migrate() -> None:
    """Alembic upgrade to head."""
    from post_service.migrations import upgrade

    upgrade(PostSettings().database_url.get_secret_value())


if __name__ == "__main__":
    cli()
