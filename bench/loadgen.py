"""Open-loop load: Poisson arrivals scheduled against the clock, latency from the intended time.

A closed loop (N clients, each waiting for its answer before sending again) slows down with the
server and so hides the server's stalls ("coordinated omission"). Here every request has an
intended send time drawn in advance from a Poisson process; it is sent at that time whatever
happened to earlier ones, and its latency is measured from that intended time, so a stall shows
up in every request that should have been sent during it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.stats import Summary, summarize

__all__ = [
    "Call",
    "LoadResult",
    "Outcome",
    "Picker",
    "ResponseHook",
    "poisson_offsets",
    "run_open_loop",
    "sequential_latencies",
]

TRANSPORT_ERROR = 0
DROPPED = -1


@dataclass(frozen=True)
class Call:
    """One request to send; ``expect`` is the status that counts as success."""

    kind: str
    method: str
    path: str
    headers: Mapping[str, str] | None = None
    json: Any = None
    expect: int = 200


Picker = Callable[[random.Random], Call]
ResponseHook = Callable[[Call, httpx.Response, float], None]
"""Called with the call, its response and the monotonic time the response arrived."""


@dataclass(frozen=True)
class Outcome:
    kind: str
    intended_s: float  # offset from the start of the run
    latency_s: float
    status: int  # HTTP status; 0 transport error or timeout; -1 dropped (too many in flight)
    ok: bool


@dataclass
class LoadResult:
    rate: float
    duration_s: float
    outcomes: list[Outcome] = field(default_factory=list)
    elapsed_s: float = 0.0
    max_lateness_s: float = 0.0  # how far behind its schedule the sender fell at worst

    def kinds(self) -> list[str]:
        return sorted({o.kind for o in self.outcomes})

    def summary(self, kind: str | None = None) -> Summary:
        """Summary of one request type (``None``: all of them) at the offered rate."""
        chosen = [o for o in self.outcomes if kind is None or o.kind == kind]
        share = len(chosen) / len(self.outcomes) if self.outcomes else 0.0
        return summarize(
            kind or "all",
            [o.latency_s for o in chosen if o.ok],
            sum(1 for o in chosen if not o.ok),
            offered_rps=self.rate * share,
            window_s=max(self.elapsed_s, self.duration_s),
        )

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            if not o.ok:
                key = f"{o.kind}:{o.status}"
                counts[key] = counts.get(key, 0) + 1
        return counts


def poisson_offsets(rate: float, duration_s: float, rng: random.Random) -> list[float]:
    """Arrival times in [0, duration_s) of a Poisson process of ``rate`` per second."""
    if rate <= 0 or duration_s <= 0:
        return []
    offsets: list[float] = []
    t = rng.expovariate(rate)
    while t < duration_s:
        offsets.append(t)
        t += rng.expovariate(rate)
    return offsets


def _check_local(client: httpx.AsyncClient) -> None:
    host = urlsplit(str(client.base_url)).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load is only ever sent to this machine, not to {host!r}")


async def run_open_loop(
    client: httpx.AsyncClient,
    pick: Picker,
    *,
    rate: float,
    duration_s: float,
    seed: int = 0,
    max_in_flight: int = 512,
    drain_s: float = 10.0,
    on_response: ResponseHook | None = None,
) -> LoadResult:
    """Offer ``rate`` requests per second for ``duration_s`` seconds; bounded in count and time.

    Requests still unanswered ``drain_s`` after the last intended send are cancelled and count
    as errors, as do arrivals met with ``max_in_flight`` requests already outstanding (the
    generator refuses to grow without bound when the server has stopped answering).
    """
    _check_local(client)
    rng = random.Random(seed)
    offsets = poisson_offsets(rate, duration_s, rng)
    calls = [pick(rng) for _ in offsets]
    result = LoadResult(rate=rate, duration_s=duration_s)
    in_flight: set[asyncio.Task[None]] = set()
    start = time.monotonic()

    async def send(call: Call, intended: float) -> None:
        status = TRANSPORT_ERROR
        try:
            response = await client.request(
                call.method, call.path, headers=call.headers, json=call.json
            )
            done = time.monotonic()
            status = response.status_code
            if on_response is not None and status == call.expect:
                on_response(call, response, done)
        except (httpx.HTTPError, OSError):
            done = time.monotonic()
        except asyncio.CancelledError:
            # Unanswered at the drain bound: an error, with the time it had been waiting.
            result.outcomes.append(
                Outcome(call.kind, intended - start, time.monotonic() - intended, status, False)
            )
            raise
        result.outcomes.append(
            Outcome(call.kind, intended - start, done - intended, status, status == call.expect)
        )

    for offset, call in zip(offsets, calls, strict=True):
        intended = start + offset
        delay = intended - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            result.max_lateness_s = max(result.max_lateness_s, -delay)
        if len(in_flight) >= max_in_flight:
            result.outcomes.append(Outcome(call.kind, offset, 0.0, DROPPED, False))
            continue
        task = asyncio.create_task(send(call, intended))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    if in_flight:
        _done, pending = await asyncio.wait(set(in_flight), timeout=drain_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    result.elapsed_s = time.monotonic() - start
    return result


async def sequential_latencies(
    client: httpx.AsyncClient, calls: Sequence[Call]
) -> tuple[list[float], int]:
    """Send ``calls`` one after another; (latencies of the successes in s, error count)."""
    _check_local(client)
    latencies: list[float] = []
    errors = 0
    for call in calls:
        t0 = time.perf_counter()
        try:
            response = await client.request(
                call.method, call.path, headers=call.headers, json=call.json
            )
        except (httpx.HTTPError, OSError):
            errors += 1
            continue
        if response.status_code == call.expect:
            latencies.append(time.perf_counter() - t0)
        else:
            errors += 1
    return latencies, errors
