"""The outbox relay stops when asked, even when a wake-up races with the stop."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from common.messaging.publisher import Publisher
from network_service.repository.driver import Graph
from network_service.service.outbox_relay import Neo4jOutboxRelay


class _EmptyOutbox:
    """Stands in for the graph: the outbox never has anything to claim."""

    def __init__(self) -> None:
        self.passes = 0

    async def write(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        self.passes += 1
        return []


async def test_stop_wins_over_a_simultaneous_wake_up() -> None:
    # A commit's wake() landing just before stop() used to be swallowed together with the
    # cancellation (asyncio.wait_for on 3.11), leaving the relay running and stop() hanging.
    for _ in range(20):
        outbox = _EmptyOutbox()
        relay = Neo4jOutboxRelay(cast(Graph, outbox), cast(Publisher, None), poll_interval_s=5.0)
        await relay.start()
        while outbox.passes == 0:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # sleeping between passes now
        relay.wake()
        await asyncio.sleep(0)  # the wake-up is seen, the relay not resumed yet
        stopping = asyncio.create_task(relay.stop())
        done, _ = await asyncio.wait({stopping}, timeout=2)
        assert stopping in done, "the relay outlived stop()"
        passes = outbox.passes
        await asyncio.sleep(0.05)
        assert outbox.passes == passes  # and it no longer polls
