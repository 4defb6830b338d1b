"""A fan-out worker that cannot reach RabbitMQ says so in the log while it retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, cast

import pytest

from common.logging import configure_logging
from feed_service.service.fanout import FanoutWorker
from feed_service.service.feed_manager import FeedManager
from tests.support.server import free_port


async def test_connection_failures_are_logged(capsys: pytest.CaptureFixture[str]) -> None:
    # Configured inside the test so the handler writes to capsys' stdout.
    configure_logging("feed_service")
    nothing_listening = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    # Never used: the worker does not get as far as a message.
    feeds = cast(FeedManager, object())
    worker = FanoutWorker(nothing_listening, feeds, prefetch=1, name="fanout-test")
    task = asyncio.create_task(worker.run_forever())
    out = ""
    try:
        for _ in range(100):
            out += capsys.readouterr().out
            if _failures(out):
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    failures = _failures(out)
    assert failures, f"no consumer_connect_failed logged:\n{out[-2000:]}"
    assert failures[0]["worker"] == "fanout-test"


def _failures(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "consumer_connect_failed"]
