"""``python -m <service> serve | worker | migrate``: one command line for every service.

``serve`` runs the HTTP app under uvicorn (which handles SIGTERM/SIGINT and runs the app's
shutdown, stopping its workers). ``worker`` runs the service's lifespan without HTTP and its
workers until SIGTERM or SIGINT, then stops them and exits 0. A service adds its own commands
to the returned typer app.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, TypeVar

import typer

from common.logging import configure_logging, get_logger
from common.settings import ServiceSettings
from common.tracing import configure_tracing, shutdown_tracing
from common.workers import running

if TYPE_CHECKING:
    from common.app import Wiring

__all__ = ["run_until_signalled", "service_cli"]

log = get_logger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_until_signalled(wiring: AbstractAsyncContextManager[Wiring]) -> None:
    """Enter ``wiring``, run its workers, and on SIGTERM/SIGINT stop them and return.

    The signal cancels this task wherever it is, so one that lands during start-up (a
    lifespan still waiting for its database) stops the process too.
    """

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        log.info("worker_stopping", signal=sig.name)
        main.cancel()

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        async with wiring as wired, running(wired.workers):
            await asyncio.Event().wait()
    except asyncio.CancelledError:
        if not received:
            raise
        main.uncancel()
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


S = TypeVar("S", bound=ServiceSettings)


def service_cli(
    *,
    name: str,
    settings: Callable[[], S],
    app_module: str,
    default_port: int,
    migrate: Callable[[S], str] | None = None,
    help: str | None = None,
) -> typer.Typer:
    """The typer app of one service: ``serve``, ``worker`` and ``migrate``.

    ``app_module`` names the service's ``app.py`` (its ``create_app`` and ``lifespan``), imported
    only by ``serve`` and ``worker``: ``migrate`` (a deployment's first step) need not load the
    whole service. ``migrate`` applies the service's schema and returns what to print; a
    service without a schema gets a ``migrate`` that says so, so every service answers the
    same commands.
    """
    cli = typer.Typer(add_completion=False, no_args_is_help=True, help=help or f"Murmur {name}")

    @cli.command()
    def serve(
        host: str = "127.0.0.1",
        port: int = default_port,
        forwarded_allow_ips: str | None = typer.Option(
            None, help="Proxies trusted for X-Forwarded-For (default: the TRUSTED_PROXIES setting)"
        ),
    ) -> None:
        """Run the HTTP API (and, unless RUN_WORKERS=false, the background workers)."""
        from common.server import run_http

        app = importlib.import_module(app_module).create_app(settings())
        run_http(app, host=host, port=port, trusted_proxies=forwarded_allow_ips)

    @cli.command()
    def worker() -> None:
        """Run only the background workers (consumers, outbox relay), no HTTP."""
        from common.app import WORKER

        loaded = settings()
        configure_logging(name, loaded.log_level)
        configure_tracing(name)
        lifespan = importlib.import_module(app_module).lifespan
        try:
            asyncio.run(run_until_signalled(lifespan(loaded, WORKER)))
        finally:
            shutdown_tracing()

    @cli.command("migrate")
    def migrate_command() -> None:
        """Bring the service's schema up to date (idempotent)."""
        if migrate is None:
            typer.echo(f"{name} has no schema to migrate")
            return
        done = migrate(settings())
        if done:
            typer.echo(done)

    return cli
