"""``python -m feed_service serve|worker``."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import typer

from feed_service.settings import FeedSettings

cli = typer.Typer(add_completion=False, no_args_is_help=True)


@cli.command()
def serve(host: str = "127.0.0.1", port: int = 8004) -> None:
    """HTTP API (plus consumer and fan-out workers unless FEED_RUN_WORKERS=false)."""
    from common.server import run_http
    from feed_service.app import create_app

    run_http(create_app(), host=host, port=port)


@cli.command()
def worker() -> None:
    """Event consumer and fan-out workers only, no HTTP."""
    from common.logging import configure_logging
    from feed_service.runtime import open_runtime, run_workers

    settings = FeedSettings()
    configure_logging("feed_service", settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with open_runtime(settings) as runtime, run_workers(runtime):
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


if __name__ == "__main__":
    cli()
