"""The chaos test's own platform: backing servers and services not shared with any other test,
since the test kills and restarts them: one per test (the short and the long run each get
theirs)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import pytest

from tests.chaos.faults import ChaosStack


@pytest.fixture
async def chaos_stack(request: pytest.FixtureRequest) -> AsyncIterator[ChaosStack]:
    # Append-only Redis: a restart keeps the data, as a production restart would; losing the
    # feed database is a fault of its own (FLUSHDB).
    stack = ChaosStack(redis_appendonly=True)
    failed_before = request.session.testsfailed
    try:
        await asyncio.to_thread(stack.start)
        yield stack
    finally:
        # The services' and servers' logs are what explains a failure: kept then.
        keep = request.session.testsfailed > failed_before or bool(
            os.environ.get("MURMUR_CHAOS_KEEP")
        )
        await asyncio.to_thread(stack.stop, keep=keep)
        if keep:
            print(f"\nchaos platform logs kept in {stack.root}", file=sys.stderr)
