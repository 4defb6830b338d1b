"""Fault injection under a write load, then a consistency check (issue 12).

Marked `chaos`: `make chaos` runs it (`MURMUR_CHAOS=long`: more users and three passes of the
faults; `make chaos-short` the short shape). It is not yet part of `make test`: its short run
still fails on one open finding (posts that mention a reader missing from her feed after the
faults; see docs/feed.md), and a red suite would hide every other result. The test starts its
own backing servers and platform (`conftest.chaos_stack`) and drives everything through the
gateway; the faults are listed in `ChaosStack.faults`, the checks in `tests.chaos.checks`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from tests.chaos.checks import (
    FaultWindow,
    Finding,
    check_all,
    check_availability,
    check_no_500,
)
from tests.chaos.faults import ChaosStack
from tests.chaos.load import LoadDriver, LoadShape
from tests.chaos.model import Outcome
from tests.chaos.observe import Observer

pytestmark = pytest.mark.chaos
LONG = os.environ.get("MURMUR_CHAOS") == "long"


@dataclass(frozen=True)
class ChaosShape:
    load: LoadShape
    passes: int  # of the whole fault list
    down_s: float  # how long a stopped server stays down
    grace_s: float  # after every service is ready again, before failures count
    steady_s: float  # fault-free load between two faults
    settle_s: float  # deadline for the consistency check once the load stops


SHORT_SHAPE = ChaosShape(
    LoadShape(users=5, think_s=0.5, register_every_s=5.0, burst_per_user=3),
    passes=1,
    down_s=3.0,
    grace_s=2.0,
    steady_s=2.0,
    settle_s=60.0,
)
LONG_SHAPE = ChaosShape(
    LoadShape(users=20, think_s=0.3, register_every_s=2.0, burst_per_user=3),
    passes=3,
    down_s=15.0,
    grace_s=3.0,
    steady_s=15.0,
    settle_s=180.0,
)


def _log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Bounds for a loaded machine; the short run takes about 3 minutes on an idle one.
@pytest.mark.timeout(3600 if LONG else 1200)
async def test_faults_under_load_lose_nothing(chaos_stack: ChaosStack) -> None:
    shape = LONG_SHAPE if LONG else SHORT_SHAPE
    platform = chaos_stack.live_platform
    driver = LoadDriver(platform.gateway_url, shape.load)
    stop = asyncio.Event()
    windows: list[FaultWindow] = []
    try:
        await driver.setup()
        _log(f"{len(driver.users)} users registered; load and faults start")
        load = asyncio.create_task(driver.run(stop))
        await asyncio.sleep(shape.steady_s)
        await driver.burst()  # warms every service's connection pools
        for n in range(shape.passes):
            for fault in chaos_stack.faults(down_s=shape.down_s):
                start = time.monotonic()
                await asyncio.to_thread(fault.down)
                if fault.name == "stop rabbitmq":
                    await driver.post_like_read()
                await asyncio.sleep(fault.down_s)
                await asyncio.to_thread(fault.up)
                await asyncio.to_thread(platform.wait_ready, 300.0)
                await asyncio.sleep(shape.grace_s)
                windows.append(FaultWindow(fault.name, start, time.monotonic()))
                _log(f"pass {n + 1}: {fault.name} done in {windows[-1].end - start:.1f}s")
                await driver.burst()
                await asyncio.sleep(shape.steady_s)
        stop.set()
        await load
        _log(f"load stopped: {_summary(driver)}")
        findings = await _settled_findings(chaos_stack, driver, shape.settle_s)
    finally:
        stop.set()
        await driver.aclose()
    findings += check_availability(driver.ledger.requests, windows)
    findings += check_no_500(driver.ledger.requests)
    by_check = Counter(f.check for f in findings)
    assert not findings, "\n".join(
        [f"{count} x [{check}]" for check, count in sorted(by_check.items())]
        + [str(f) for f in findings[:200]]
    )


async def _settled_findings(
    stack: ChaosStack, driver: LoadDriver, settle_s: float
) -> list[Finding]:
    """Polls the whole check until it passes or the deadline: the system is eventually
    consistent, so only what is still wrong at the deadline counts."""
    observer = Observer(
        stack.live_platform.gateway_url, stack.mail_api_url, stack.rabbitmq.management_url
    )
    deadline = time.monotonic() + settle_s
    while True:
        observation = await observer.observe(driver.ledger, driver.users)
        findings = check_all(driver.ledger, observation)
        if not findings or time.monotonic() > deadline:
            _log(f"consistency check: {len(findings)} findings")
            return findings
        await asyncio.sleep(3.0)


def _summary(driver: LoadDriver) -> str:
    requests = driver.ledger.requests
    statuses = Counter(
        "no answer" if r.status is None else f"{r.status // 100}xx" for r in requests
    )
    outcomes = Counter(Outcome.of(r.status).value for r in requests)
    return (
        f"{len(requests)} requests {dict(statuses)}, {driver.ledger.acked_count()} acknowledged "
        f"writes; outcomes {dict(outcomes)}"
    )
