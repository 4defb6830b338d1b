"""``python -m <service> worker`` for each of the five services, against the real servers:
it starts its workers and, on SIGTERM, stops them and exits 0 within a bound."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from deploy.platform.runner import SERVICES, Platform
from tests.conftest import MakeBacking

# Generous for a loaded 2-core machine; a worker that ignores SIGTERM never exits at all.
STOP_BOUND_S = 20.0
START_BOUND_S = 60.0
# The services whose worker consumes events: wait until the consumer is connected, so the
# stop has a live connection to close.
CONSUMING = {"post", "network", "feed", "email"}


@pytest.fixture(scope="module")
async def platform(
    make_backing: MakeBacking,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    backing = await make_backing("workers")
    platform = Platform(
        backing=backing, state_dir=tmp_path_factory.mktemp("workers"), environment="test"
    )
    await asyncio.to_thread(platform.migrate)
    yield platform


def _events(log: Path) -> list[str]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line).get("event", ""))
        except json.JSONDecodeError:
            continue
    return events


async def _wait_for(log: Path, proc: subprocess.Popen[bytes], event: str) -> None:
    deadline = time.monotonic() + START_BOUND_S
    while event not in _events(log):
        assert proc.poll() is None, f"worker exited early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {event} in:\n{log.read_text()[-3000:]}"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("service", SERVICES)
async def test_worker_stops_cleanly_on_sigterm(
    platform: Platform, service: str, tmp_path: Path
) -> None:
    log = tmp_path / f"{service}-worker.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"{service}_service", "worker"],
            env=platform.env_for(service),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        await _wait_for(log, proc, "workers_started")
        if service in CONSUMING:
            await _wait_for(log, proc, "consumer_started")
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = await asyncio.to_thread(proc.wait, STOP_BOUND_S)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, f"exit {code}:\n{log.read_text()[-3000:]}"
    assert elapsed < STOP_BOUND_S
    events = _events(log)
    assert "workers_stopped" in events
    if service in CONSUMING:
        assert "consumer_stopped" in events
