"""Waiting for an eventually consistent effect (a consumed event, a relayed outbox row, a mail)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Generous: a passing check returns at once, and a loaded 2-core machine running several
# suites at a time can take tens of seconds to deliver an event through real servers.
DEADLINE_S = 60.0


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    what: str = "condition",
    *,
    timeout: float = DEADLINE_S,
    interval: float = 0.05,
) -> T:
    """Await ``check`` until it returns something truthy, and return that.

    An ``AssertionError`` from ``check`` counts as "not yet"; once ``timeout`` seconds have
    passed it is raised again, otherwise an ``AssertionError`` naming ``what`` and the last
    result.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        else:
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what} ({result!r})")
        await asyncio.sleep(interval)


async def until(
    predicate: Callable[[], object],
    what: str = "condition",
    *,
    timeout: float = DEADLINE_S,
    interval: float = 0.05,
) -> None:
    """``eventually`` for a plain (not awaitable) predicate, such as a list's length."""

    async def check() -> bool:
        return bool(predicate())

    await eventually(check, what, timeout=timeout, interval=interval)
