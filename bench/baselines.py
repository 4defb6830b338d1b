"""Baselines measured in the same run: Redis's raw limit, the framework's, fan-out on read."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import redis.asyncio as aioredis

from bench.loadgen import Call, LoadGenerator, LoadResult
from bench.stats import percentile
from deploy.local import free_port

__all__ = [
    "BareServer",
    "FanoutOnRead",
    "redis_benchmark_tool",
    "redis_pipelined",
    "wrk_closed_loop",
]


async def redis_pipelined(
    url: str, *, keys_n: int = 10_000, ops: int = 200_000, pipeline: int = 1000
) -> dict[str, float]:
    """ZADD and ZREVRANGE(0, 9) per second, pipelined from Python (the client the services use).

    Uses its own database number and empties it afterwards.
    """
    client = aioredis.Redis.from_url(url, decode_responses=True)
    rng = random.Random(1)
    try:
        await client.flushdb()
        t0 = time.perf_counter()
        for start in range(0, ops, pipeline):
            pipe = client.pipeline(transaction=False)
            for n in range(start, min(start + pipeline, ops)):
                pipe.zadd(f"feed:{{u:{rng.randrange(keys_n)}}}", {f"{n}:a": n})
            await pipe.execute()
        zadd = ops / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for start in range(0, ops, pipeline):
            pipe = client.pipeline(transaction=False)
            for _ in range(start, min(start + pipeline, ops)):
                pipe.zrevrange(f"feed:{{u:{rng.randrange(keys_n)}}}", 0, 9, withscores=True)
            await pipe.execute()
        zrevrange = ops / (time.perf_counter() - t0)
        await client.flushdb()
    finally:
        await client.aclose()
    return {"zadd_per_s": zadd, "zrevrange_per_s": zrevrange, "pipeline": pipeline}


def redis_benchmark_tool(port: int, db: int, *, requests: int = 500_000) -> dict[str, float]:
    """The server's own limit, without Python: ``redis-benchmark -P 1000`` on ZADD/ZREVRANGE."""
    result: dict[str, float] = {}
    commands = {
        "zadd_per_s": ["zadd", "benchfeed:__rand_int__", "__rand_int__", "m:__rand_int__"],
        "zrevrange_per_s": ["zrevrange", "benchfeed:__rand_int__", "0", "9"],
    }
    for name, command in commands.items():
        done = subprocess.run(
            [
                "redis-benchmark",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--dbnum",
                str(db),
                "-P",
                "1000",
                "-n",
                str(requests),
                "-r",
                "10000",
                "-q",
                *command,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        # -q prints e.g. "zadd ...: 812345.67 requests per second, p50=..."
        match = re.findall(r"([\d.]+) requests per second", done.stdout.replace("\r", "\n"))
        if match:
            result[name] = float(match[-1])
    return result


@dataclass
class BareServer:
    """``bench.bare_app`` under uvicorn in a subprocess on a free port."""

    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.bare_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=Path(__file__).resolve().parents[1],
            stdin=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/feed", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("bare FastAPI app did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    async def ladder(
        self,
        rates: Sequence[float],
        duration_s: float,
        *,
        processes: int = 2,
        stop_p99_ms: float = 1000.0,
    ) -> list[LoadResult]:
        results: list[LoadResult] = []
        async with LoadGenerator(f"http://127.0.0.1:{self.port}", processes=processes) as gen:
            for rate in rates:
                result = await gen.run(
                    lambda rng: Call("bare", "GET", "/feed"), rate=rate, duration_s=duration_s
                )
                results.append(result)
                summary = result.summary()
                if summary.p99_ms > stop_p99_ms or summary.error_rate > 0.05:
                    break
        return results

    def wrk(self, *, seconds: int, threads: int = 2, connections: int = 64) -> dict[str, Any]:
        """A known-fast closed-loop client (wrk, C): what the endpoint serves when the client
        is not the bound. Closed loop, so its latencies are not comparable with the open-loop
        ones; its throughput is the reference for the generator's ceiling."""
        return wrk_closed_loop(
            f"http://127.0.0.1:{self.port}/feed",
            seconds=seconds,
            threads=threads,
            connections=connections,
        )


def wrk_closed_loop(url: str, *, seconds: int, threads: int, connections: int) -> dict[str, Any]:
    if urlsplit(url).hostname != "127.0.0.1":
        raise ValueError("load is only ever sent to this machine")
    if shutil.which("wrk") is None:
        return {"error": "wrk not installed (apt-get install wrk)"}
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    out: dict[str, Any] = {"threads": threads, "connections": connections, "seconds": seconds}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if rps:
        out["requests_per_s"] = float(rps.group(1))
    for q, value, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", done.stdout, re.M):
        out[f"p{q}_ms"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    out["non_2xx"] = int(errors.group(1)) if errors else 0
    return out


class FanoutOnRead:
    """The alternative design: home feeds computed on read by a PostgreSQL join.

    A database of its own on the same PostgreSQL server holds ``follows(follower, followee)``
    and ``posts(id, author_id, created_at)`` with the indexes such a design would have; a home
    feed is the newest 10 posts over the reader's followees (and the reader), the page size the
    workload reads through the API.
    """

    QUERY = """
        SELECT p.id, p.author_id, p.created_at
        FROM posts p
        WHERE p.author_id IN (
            SELECT followee FROM follows WHERE follower = $1 UNION ALL SELECT $1
        )
        ORDER BY p.created_at DESC
        LIMIT 10
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def load(
        self,
        follows: Sequence[tuple[str, str]],
        posts: Sequence[tuple[str, str, datetime]],
    ) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(
                """
                DROP TABLE IF EXISTS follows, posts;
                CREATE TABLE follows (follower text, followee text,
                                      PRIMARY KEY (follower, followee));
                CREATE TABLE posts (id text PRIMARY KEY, author_id text NOT NULL,
                                    created_at timestamptz NOT NULL);
                """
            )
            await conn.copy_records_to_table("follows", records=list(follows))
            await conn.copy_records_to_table("posts", records=list(posts))
            await conn.execute(
                "CREATE INDEX posts_author_time ON posts (author_id, created_at DESC);"
                "ANALYZE follows; ANALYZE posts;"
            )
        finally:
            await conn.close()

    async def latencies(self, reader_id: str, reps: int) -> list[float]:
        conn = await asyncpg.connect(self.dsn)
        try:
            stmt = await conn.prepare(self.QUERY)
            await stmt.fetch(reader_id)  # plan and cache warm-up
            out: list[float] = []
            for _ in range(reps):
                t0 = time.perf_counter()
                await stmt.fetch(reader_id)
                out.append(time.perf_counter() - t0)
            return out
        finally:
            await conn.close()


def synthetic_posts(
    author_ids: Sequence[str], per_author: int, *, seed: int = 5
) -> list[tuple[str, str, datetime]]:
    """Posts for authors that exist only in the baseline (spread over the last 30 days)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    rows: list[tuple[str, str, datetime]] = []
    for author in author_ids:
        for k in range(per_author):
            when = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
            rows.append((f"syn-{author}-{k}", author, when))
    return rows


def summarize_ms(latencies_s: Sequence[float]) -> dict[str, Any]:
    ms = [x * 1000 for x in latencies_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
    }


async def sleep_until_idle(check: Any, timeout_s: float) -> bool:
    """Poll ``check()`` (sync, returns queue depth) until it is 0 twice in a row."""
    deadline = time.monotonic() + timeout_s
    zeros = 0
    while time.monotonic() < deadline:
        depth = await asyncio.to_thread(check)
        zeros = zeros + 1 if depth == 0 else 0
        if zeros >= 2:
            return True
        await asyncio.sleep(1.0)
    return False
