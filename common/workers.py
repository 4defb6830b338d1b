"""Background workers: one shape (``start``/``stop``), one runner for ``serve`` and ``worker``.

A service's lifespan (``common.app.Wiring``) names its workers; ``running`` starts them in
order and stops them in reverse, whether the HTTP app runs them (``run_workers``) or
``python -m <service> worker`` does (``common.cli``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, Protocol

from common.logging import get_logger

__all__ = ["BackgroundTask", "Worker", "running"]

log = get_logger(__name__)


class Worker(Protocol):
    """Anything with ``start`` (returns once running) and ``stop`` (returns once stopped)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class BackgroundTask:
    """A worker that runs ``run()`` (e.g. a consumer's ``run_forever``) as one asyncio task.

    ``stop`` cancels it and waits for it: the consumers stop themselves (shielded) on
    cancellation, so a stopped task has settled its messages and closed its connection.
    """

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def running(workers: Mapping[str, Worker]) -> AsyncIterator[None]:
    """The workers, started in order, for as long as the context is open; stopped in reverse.

    A worker that fails to stop is logged and the others still stop: shutdown must finish.
    """
    started: list[tuple[str, Worker]] = []
    try:
        for name, worker in workers.items():
            await worker.start()
            started.append((name, worker))
        if started:
            log.info("workers_started", workers=[name for name, _ in started])
        yield
    finally:
        for name, worker in reversed(started):
            try:
                await worker.stop()
            except Exception as exc:
                log.warning("worker_stop_failed", worker=name, error=type(exc).__name__)
        if started:
            log.info("workers_stopped", workers=[name for name, _ in started])
