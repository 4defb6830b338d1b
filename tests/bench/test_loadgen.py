"""Smoke test of the benchmark's load generator and statistics (a few seconds, no services)."""

from __future__ import annotations

import itertools
import math
import random
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from bench.baselines import wrk_closed_loop
from bench.loadgen import (
    DROPPED,
    Call,
    LoadGenerator,
    poisson_offsets,
    run_open_loop,
    sequential_latencies,
)
from bench.stats import percentile, summarize, sustainable_rate


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, 50) == 50.0
    assert percentile(values, 90) == 90.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 99.9) == 100.0  # never interpolated below the worst sample
    assert percentile([7.0], 50) == 7.0
    assert math.isnan(percentile([], 99))
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_summary_and_sustainable_rate() -> None:
    fast = summarize("read", [0.010] * 99 + [0.050], 0, offered_rps=100, window_s=1.0)
    assert fast.p50_ms == pytest.approx(10.0)
    assert fast.p99_ms == pytest.approx(10.0)
    assert fast.p999_ms == pytest.approx(50.0)
    assert fast.achieved_rps == pytest.approx(100.0)
    slow = summarize("read", [0.010] * 90 + [0.200] * 10, 0, offered_rps=200, window_s=1.0)
    erring = summarize("read", [0.010] * 90, 10, offered_rps=150, window_s=1.0)
    assert erring.error_rate == pytest.approx(0.1)
    # 150/s fails on errors and 200/s on p99: 100/s is the highest passing rate.
    assert sustainable_rate([slow, fast, erring]) == 100
    noisy_low = summarize("read", [0.2] * 100, 0, offered_rps=50, window_s=1.0)
    # Monotone: a failing lower rate ends the count, whatever passes above it.
    assert sustainable_rate([noisy_low, fast, slow]) is None
    assert sustainable_rate([slow]) is None


def test_poisson_offsets_are_exponential() -> None:
    offsets = poisson_offsets(1000.0, 10.0, random.Random(7))
    assert abs(len(offsets) - 10_000) < 400  # 4 standard deviations of a Poisson count
    assert offsets == sorted(offsets) and offsets[0] >= 0 and offsets[-1] < 10.0
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.001, rel=0.05)
    # Exponential gaps have a coefficient of variation of 1; a fixed-interval schedule has 0.
    assert statistics.pstdev(gaps) / mean == pytest.approx(1.0, abs=0.05)


@pytest.fixture
def stalling_server() -> Iterator[str]:
    """A uvicorn app in its own thread whose event loop blocks for 0.4 s on the 50th request."""
    app = FastAPI()
    seen = [0]

    @app.get("/ping")
    def ping() -> dict[str, int]:  # sync: runs in the threadpool
        return {"n": 0}

    @app.get("/work")
    async def work() -> dict[str, int]:
        seen[0] += 1
        if seen[0] == 50:
            time.sleep(0.4)
        return {"n": seen[0]}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.mark.parametrize("processes", [0, 2])
async def test_open_loop_sees_the_stall_a_closed_loop_hides(
    stalling_server: str, processes: int
) -> None:
    reported: list[tuple[str, int, float]] = []

    def on_response(call: Call, body: Any, done: float) -> None:
        reported.append((call.kind, body["n"], done))

    async with LoadGenerator(stalling_server, processes=processes) as generator:
        before = time.monotonic()
        result = await generator.run(
            lambda rng: Call("work", "GET", "/work", report=rng.random() < 0.2),
            rate=100.0,
            duration_s=1.5,
            seed=3,
            on_response=on_response,
        )
    summary = result.summary("work")
    assert summary.errors == 0
    assert 100 < summary.ok < 200  # about 150 arrivals, whichever process sent them
    assert summary.offered_rps == 100.0
    # Every request intended during the 0.4 s stall waited for it (about 40 of them), each
    # measured from its intended send time; the worst waited about the whole stall.
    slow = sorted(o.intended_s for o in result.outcomes if o.latency_s > 0.1)
    assert len(slow) >= 15
    assert slow[-1] - slow[0] >= 0.15
    assert summary.max_ms > 300
    # The reported responses (about a fifth) reached the caller's loop before run returned,
    # with their bodies and the (system-wide monotonic) time they arrived.
    assert 10 < len(reported) < 60
    assert all(kind == "work" and n >= 1 for kind, n, _ in reported)
    assert all(before < done < time.monotonic() for _, _, done in reported)
    async with httpx.AsyncClient(base_url=stalling_server, timeout=5.0) as client:
        # A closed loop of one client measures from the actual send: no stall, no slow sample
        # beyond the first connection.
        latencies, errors = await sequential_latencies(client, [Call("ping", "GET", "/ping")] * 20)
        assert errors == 0 and len(latencies) == 20


async def test_bounded_in_flight_refuses_instead_of_growing(stalling_server: str) -> None:
    # The server stalls 0.4 s on the 50th request; with at most 5 in flight the arrivals
    # during the stall are refused (counted as errors), not queued without bound.
    async with LoadGenerator(stalling_server, processes=0, max_in_flight=5) as generator:
        result = await generator.run(
            lambda rng: Call("work", "GET", "/work"), rate=200.0, duration_s=1.0, seed=1
        )
    dropped = [o for o in result.outcomes if o.status == DROPPED]
    assert len(dropped) >= 20
    assert result.summary("work").errors == len(dropped)


async def test_refuses_remote_targets() -> None:
    with pytest.raises(ValueError, match="only ever sent"):
        LoadGenerator("http://example.com", processes=0)
    with pytest.raises(ValueError, match="only ever sent"):
        await run_open_loop(
            "http://example.com", lambda rng: Call("x", "GET", "/"), rate=1, duration_s=1
        )
    with pytest.raises(ValueError, match="only ever sent"):
        wrk_closed_loop("http://example.com/", seconds=1, threads=1, connections=1)
