"""Open-loop load: Poisson arrivals scheduled against the clock, latency from the intended time.

A closed loop (N clients, each waiting for its answer before sending again) slows down with the
server and so hides the server's stalls ("coordinated omission"). Here every request has an
intended send time drawn in advance from a Poisson process; it is sent at that time whatever
happened to earlier ones, and its latency is measured from that intended time, so a stall shows
up in every request that should have been sent during it.

The generator must not be the bound: one asyncio process with httpx topped out at 200-300
requests/s against a bare uvicorn endpoint that wrk drives at 4,000-7,000/s on this machine.
Requests go out through aiohttp on uvloop, from worker processes of their own (each sends a
share of the schedule), so the sender neither shares an event loop with the caller's
bookkeeping (the fan-out watcher) nor is limited to one core.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
import uvloop

from bench.stats import Summary, summarize

__all__ = [
    "Call",
    "LoadGenerator",
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
    report: bool = False  # hand the response body to ``on_response`` when it succeeds


Picker = Callable[[random.Random], Call]
ResponseHook = Callable[[Call, Any, float], None]
"""Called with a ``report`` call, its decoded JSON body and the monotonic time it arrived
(``time.monotonic`` is the system-wide CLOCK_MONOTONIC, the same in every process)."""


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


def _check_local_url(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load is only ever sent to this machine, not to {host!r}")


def _check_local(client: httpx.AsyncClient) -> None:
    _check_local_url(str(client.base_url))


# One sender: the schedule's share given to one event loop (the caller's, or a worker's).
# Outcomes travel as plain tuples (kind, intended offset, latency, status, ok): they are
# pickled back from the worker processes, tens of thousands per step.
_Row = tuple[str, float, float, int, bool]
_Report = Callable[[Call, bytes, float], None]


@dataclass
class _Part:
    rows: list[_Row]
    max_lateness_s: float


def _connector(limit: int) -> aiohttp.TCPConnector:
    # One pooled keep-alive connection per request in flight at most: no connection is
    # opened per request once the pool is warm, and no more than the in-flight bound.
    return aiohttp.TCPConnector(limit=limit, limit_per_host=limit, keepalive_timeout=60)


async def _drive(
    session: aiohttp.ClientSession,
    base_url: str,
    schedule: Sequence[tuple[float, Call]],
    start: float,
    *,
    max_in_flight: int,
    drain_s: float,
    report: _Report | None,
) -> _Part:
    rows: list[_Row] = []
    in_flight: set[asyncio.Task[None]] = set()
    lateness = 0.0

    async def send(call: Call, intended: float) -> None:
        status = TRANSPORT_ERROR
        try:
            async with session.request(
                call.method, base_url + call.path, headers=call.headers, json=call.json
            ) as response:
                body = await response.read()
                done = time.monotonic()
                status = response.status
            if report is not None and call.report and status == call.expect:
                report(call, body, done)
        except (aiohttp.ClientError, TimeoutError, OSError):
            done = time.monotonic()
        except asyncio.CancelledError:
            # Unanswered at the drain bound: an error, with the time it had been waiting.
            rows.append((call.kind, intended - start, time.monotonic() - intended, status, False))
            raise
        rows.append((call.kind, intended - start, done - intended, status, status == call.expect))

    for offset, call in schedule:
        intended = start + offset
        delay = intended - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lateness = max(lateness, -delay)
        if len(in_flight) >= max_in_flight:
            rows.append((call.kind, offset, 0.0, DROPPED, False))
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
    return _Part(rows, lateness)


# ----------------------------------------------------------------------- worker processes
# Each worker keeps one uvloop event loop and one aiohttp session per target for its whole
# life, so connections stay warm from one ladder step to the next.
_worker_loop: asyncio.AbstractEventLoop | None = None
_worker_sessions: dict[tuple[str, int], aiohttp.ClientSession] = {}
_worker_reports: Any = None  # multiprocessing queue back to the parent


def _worker_init(reports: Any) -> None:
    global _worker_loop, _worker_reports
    _worker_loop = uvloop.new_event_loop()
    asyncio.set_event_loop(_worker_loop)
    _worker_reports = reports


def _worker_session(base_url: str, limit: int, timeout_s: float) -> aiohttp.ClientSession:
    key = (base_url, limit)
    session = _worker_sessions.get(key)
    if session is None:
        session = aiohttp.ClientSession(
            connector=_connector(limit), timeout=aiohttp.ClientTimeout(total=timeout_s)
        )
        _worker_sessions[key] = session
    return session


def _worker_job(
    job: int,
    base_url: str,
    schedule: list[tuple[float, Call]],
    start: float,
    max_in_flight: int,
    drain_s: float,
    timeout_s: float,
) -> _Part:
    assert _worker_loop is not None
    reports = _worker_reports

    def report(call: Call, body: bytes, done: float) -> None:
        reports.put((job, call, body, done))

    async def go() -> _Part:
        session = _worker_session(base_url, max_in_flight, timeout_s)
        return await _drive(
            session,
            base_url,
            schedule,
            start,
            max_in_flight=max_in_flight,
            drain_s=drain_s,
            report=report,
        )

    try:
        return _worker_loop.run_until_complete(go())
    finally:
        # Everything this job reported is queued before the marker that ends it.
        reports.put((job, None, b"", 0.0))


class LoadGenerator:
    """Open-loop load against one local base URL, from ``processes`` worker processes.

    With ``processes=0`` the requests are sent from the caller's event loop (for tests and
    small runs). Otherwise each worker process (spawned once, kept for every run) sends a
    round-robin share of the Poisson schedule, which is itself a Poisson process of
    ``rate / processes``; latency samples are merged. Responses to calls marked ``report``
    come back to ``on_response`` in the caller's loop as they arrive, not at the end of the
    run, so e.g. a fan-out watcher starts timing a post when its 201 arrives.
    """

    def __init__(
        self,
        base_url: str,
        *,
        processes: int = 2,
        max_in_flight: int = 512,
        timeout_s: float = 10.0,
    ) -> None:
        _check_local_url(base_url)
        self.base_url = base_url.rstrip("/")
        self.processes = processes
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self._pool: ProcessPoolExecutor | None = None
        self._reports: Any = None
        self._reader: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._jobs = itertools.count()
        self._waiting: dict[int, _JobState] = {}
        self._lock = threading.Lock()

    async def __aenter__(self) -> LoadGenerator:
        if self.processes <= 0:
            self._session = aiohttp.ClientSession(
                connector=_connector(self.max_in_flight),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            )
            return self
        context = multiprocessing.get_context("spawn")
        self._reports = context.Queue()
        self._pool = ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=context,
            initializer=_worker_init,
            initargs=(self._reports,),
        )
        self._reader = threading.Thread(target=self._read_reports, daemon=True)
        self._reader.start()
        # Spawn (and import) every worker now, not inside the first measured step.
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, time.sleep, 0.2) for _ in range(self.processes))
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._pool is not None:
            await asyncio.to_thread(self._pool.shutdown)
            self._pool = None
        if self._reports is not None:
            self._reports.put(None)
            if self._reader is not None:
                await asyncio.to_thread(self._reader.join, 10)
            self._reports.close()
            self._reports = None

    def _read_reports(self) -> None:
        while True:
            item = self._reports.get()
            if item is None:
                return
            job, call, body, done = item
            with self._lock:
                state = self._waiting.get(job)
            if state is not None:
                state.loop.call_soon_threadsafe(state.deliver, call, body, done)

    async def run(
        self,
        pick: Picker,
        *,
        rate: float,
        duration_s: float,
        seed: int = 0,
        drain_s: float = 10.0,
        on_response: ResponseHook | None = None,
        lead_s: float = 0.5,
    ) -> LoadResult:
        """Offer ``rate`` requests per second for ``duration_s`` seconds; bounded in count and time.

        Requests still unanswered ``drain_s`` after the last intended send are cancelled and
        count as errors, as do arrivals met with ``max_in_flight`` requests already
        outstanding (the generator refuses to grow without bound when the server has stopped
        answering). The schedule starts ``lead_s`` from now, once every worker has it.
        """
        rng = random.Random(seed)
        offsets = poisson_offsets(rate, duration_s, rng)
        schedule = [(offset, pick(rng)) for offset in offsets]
        result = LoadResult(rate=rate, duration_s=duration_s)

        def deliver(call: Call, body: bytes, done: float) -> None:
            if on_response is not None:
                on_response(call, json.loads(body) if body else None, done)

        if self._session is not None:
            start = time.monotonic()
            part = await _drive(
                self._session,
                self.base_url,
                schedule,
                start,
                max_in_flight=self.max_in_flight,
                drain_s=drain_s,
                report=deliver,
            )
            parts = [part]
        else:
            if self._pool is None:
                raise RuntimeError("use LoadGenerator as an async context manager")
            loop = asyncio.get_running_loop()
            start = time.monotonic() + lead_s
            share = max(1, self.max_in_flight // self.processes)
            jobs: list[int] = []
            futures = []
            for n in range(self.processes):
                job = next(self._jobs)
                state = _JobState(loop, deliver)
                with self._lock:
                    self._waiting[job] = state
                jobs.append(job)
                futures.append(
                    loop.run_in_executor(
                        self._pool,
                        _worker_job,
                        job,
                        self.base_url,
                        schedule[n :: self.processes],
                        start,
                        share,
                        drain_s,
                        self.timeout_s,
                    )
                )
            try:
                parts = list(await asyncio.gather(*futures))
                # The end-of-job markers follow each worker's last report in its queue.
                for job in jobs:
                    await self._waiting[job].finished.wait()
            finally:
                with self._lock:
                    for job in jobs:
                        self._waiting.pop(job, None)
        result.outcomes = sorted(
            (Outcome(*row) for part in parts for row in part.rows), key=lambda o: o.intended_s
        )
        result.max_lateness_s = max(part.max_lateness_s for part in parts)
        result.elapsed_s = time.monotonic() - start
        return result


@dataclass
class _JobState:
    loop: asyncio.AbstractEventLoop
    on_report: Callable[[Call, bytes, float], None]
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def deliver(self, call: Call | None, body: bytes, done: float) -> None:
        if call is None:
            self.finished.set()
        else:
            self.on_report(call, body, done)


async def run_open_loop(
    base_url: str,
    pick: Picker,
    *,
    rate: float,
    duration_s: float,
    seed: int = 0,
    processes: int = 0,
    max_in_flight: int = 512,
    drain_s: float = 10.0,
    on_response: ResponseHook | None = None,
) -> LoadResult:
    """One run of :class:`LoadGenerator` (its workers are started and stopped for it)."""
    async with LoadGenerator(
        base_url, processes=processes, max_in_flight=max_in_flight
    ) as generator:
        return await generator.run(
            pick,
            rate=rate,
            duration_s=duration_s,
            seed=seed,
            drain_s=drain_s,
            on_response=on_response,
        )


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
