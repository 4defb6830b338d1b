"""Baselines measured in the same run: Redis's raw limit on feed-shaped keys, its counters,
and the layered app behind a gateway of the platform's own configuration."""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis as redis_sync

from bench.stats import MIN_P99_SAMPLES, percentile
from deploy.gateway.render import GatewayConfig, nginx_command, render_nginx_conf
from deploy.local import free_port
from deploy.platform.runner import GATEWAY_SERVICES

__all__ = [
    "BenchGateway",
    "LayerServer",
    "feed_member",
    "raw_zadd_feed_shaped",
    "redis_counters",
    "redis_delta",
    "summarize_ms",
    "wrk_closed_loop",
]


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        raw = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def feed_member(rng: random.Random) -> str:
    """A member shaped like feed_service's: ``<post id>:<author id>``, two canonical UUIDs."""
    return f"{uuid.UUID(int=rng.getrandbits(128))}:{uuid.UUID(int=rng.getrandbits(128))}"


def _pipe(port: int, payload: bytes) -> float:
    """Send raw commands with ``redis-cli --pipe`` (C, no client library); seconds taken."""
    t0 = time.perf_counter()
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--pipe"],
        input=payload,
        capture_output=True,
        timeout=600,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0 or b"errors: 0" not in done.stdout:
        raise RuntimeError(
            f"redis-cli --pipe failed: {done.stdout[-300:]!r} {done.stderr[-300:]!r}"
        )
    return elapsed


def raw_zadd_feed_shaped(
    port: int, db: int, *, feeds: int, cap: int, commands: int, seed: int = 7
) -> dict[str, Any]:
    """The server's raw ZADD rate on keys shaped like home feeds, without Python.

    ``feeds`` keys of database ``db`` are filled to ``cap`` members of feed_service's member
    size (73 bytes), so they have the encoding real feeds have (a skiplist: members longer
    than ``zset-max-listpack-value``); then ``commands`` ZADDs of new members with newer
    scores go to random keys through ``redis-cli --pipe``: once bare, once each followed by
    the trim to the cap (ZREMRANGEBYRANK), which is what a delivery must keep. The database is
    emptied afterwards.
    """
    rng = random.Random(seed)
    names = [f"feed:{{u:{uuid.UUID(int=rng.getrandbits(128))}}}" for _ in range(feeds)]
    select = _resp("SELECT", str(db))
    fill = [select, _resp("FLUSHDB")]
    for name in names:
        for start in range(0, cap, 200):
            pairs = [
                x for n in range(start, min(start + 200, cap)) for x in (str(n), feed_member(rng))
            ]
            fill.append(_resp("ZADD", name, *pairs))
    _pipe(port, b"".join(fill))
    client: Any = redis_sync.Redis(port=port, db=db, decode_responses=True)
    try:
        encoding = client.object("encoding", names[0])
        member_bytes = len(str(client.zrange(names[0], 0, 0)[0]))
        listpack_value = client.config_get("zset-max-listpack-value")
        zadd = [select]
        zadd_trim = [select]
        for n in range(commands):
            name = names[rng.randrange(feeds)]
            command = _resp("ZADD", name, str(cap + n), feed_member(rng))
            zadd.append(command)
            zadd_trim += [command, _resp("ZREMRANGEBYRANK", name, "0", str(-(cap + 1)))]

        # Server time per command too (INFO commandstats): robust to a busy machine, where
        # the wall-clock rate also measures redis-cli and the neighbours.
        def usec(name: str) -> int:
            stats = client.info("commandstats").get(f"cmdstat_{name}") or {}
            return int(stats.get("usec", 0))

        u0 = usec("zadd")
        zadd_s = _pipe(port, b"".join(zadd))
        zadd_us = (usec("zadd") - u0) / commands
        zadd_trim_s = _pipe(port, b"".join(zadd_trim))
        reads = [select] + [
            _resp("ZREVRANGE", names[rng.randrange(feeds)], "0", "9", "WITHSCORES")
            for _ in range(commands)
        ]
        r0 = usec("zrevrange")
        zrevrange_s = _pipe(port, b"".join(reads))
        zrevrange_us = (usec("zrevrange") - r0) / commands
        usage = int(client.memory_usage(names[0], samples=0) or 0)
        entries = int(client.zcard(names[0]))
        client.flushdb()
    finally:
        client.close()
    return {
        "feeds": feeds,
        "cap": cap,
        "commands": commands,
        "encoding": encoding,
        "member_bytes": member_bytes,
        "zset_max_listpack_value": listpack_value.get("zset-max-listpack-value"),
        "zadd_per_s": commands / zadd_s,
        "zadd_trim_per_s": commands / zadd_trim_s,
        "zrevrange10_per_s": commands / zrevrange_s,
        "zadd_server_us": zadd_us,
        "zrevrange10_server_us": zrevrange_us,
        "bytes_per_entry_at_cap": usage / entries if entries else None,
        "client": "redis-cli --pipe",
    }


async def redis_counters(client: Any) -> dict[str, Any]:
    """``INFO commandstats`` (calls and µs per command) and the server's CPU so far."""
    stats = await client.info("commandstats")
    cpu = await client.info("cpu")
    return {
        "commands": {
            k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()
        },
        "cpu_s": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
    }


# Commands the harness itself sends during a phase (the fan-out watcher's probes, these
# counters): left out of the platform's figures.
HARNESS_COMMANDS = frozenset({"zscore", "info", "memory|usage", "zcard", "ping"})


def redis_delta(
    before: dict[str, Any], after: dict[str, Any], *, per: int | None = None
) -> dict[str, Any]:
    """What the server did between two :func:`redis_counters`: per command, and in total.

    Commands run inside a script are counted both in their own line and in EVALSHA's, so the
    total of command time (``command_usec``) leaves the script lines out and adds their
    commands; ``server_cpu_us`` is the server's own CPU (event loop, parsing, scripts).
    """
    commands: dict[str, dict[str, int]] = {}
    for name, (calls, usec) in after["commands"].items():
        c0, u0 = before["commands"].get(name, (0, 0))
        if calls - c0 > 0 and name not in HARNESS_COMMANDS:
            commands[name] = {"calls": calls - c0, "usec": usec - u0}
    scripts = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
    command_usec = sum(v["usec"] for k, v in commands.items() if k not in scripts)
    out: dict[str, Any] = {
        "commands": commands,
        "command_usec": command_usec,
        "calls": sum(v["calls"] for k, v in commands.items() if k not in scripts),
        "server_cpu_us": (after["cpu_s"] - before["cpu_s"]) * 1e6,
    }
    if per:
        out["per"] = per
        out["command_us_per"] = command_usec / per
        out["server_cpu_us_per"] = out["server_cpu_us"] / per
        out["calls_per"] = out["calls"] / per
    return out


class _ChildProcess:
    """A server this run started (and alone stops)."""

    proc: subprocess.Popen[bytes] | None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
            self.proc = None


@dataclass
class LayerServer(_ChildProcess):
    """One layer of ``bench.bare_app`` under uvicorn, on a fixed free port, one at a time."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self, layer: str) -> None:
        self.stop()
        out = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_app", "--layer", layer, "--port", str(self.port)],
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{self.port}/api/v1/me/feed"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"layer {layer} exited; see {self.log}")
            try:
                httpx.get(url, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"layer {layer} did not start")


@dataclass
class BenchGateway(_ChildProcess):
    """An nginx rendered from the platform's own gateway template (same routes, workers and
    proxy settings), whose upstreams all point at the layer server: a layer's request takes
    the same location as the real home feed."""

    root: Path
    upstream: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        runtime = self.root / "bench-gateway"
        runtime.mkdir(parents=True, exist_ok=True)
        config = GatewayConfig(
            runtime_dir=str(runtime),
            listen=f"127.0.0.1:{self.port}",
            upstreams={s: self.upstream for s in GATEWAY_SERVICES},
            daemon=False,
            worker_processes="2",  # as deploy.platform.runner starts the real one
            error_log=str(runtime / "error.log"),
            access_log=str(runtime / "access.log"),
        )
        conf = runtime / "nginx.conf"
        conf.write_text(render_nginx_conf(config))
        self.proc = subprocess.Popen(
            nginx_command(conf, runtime), stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("bench gateway did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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


def summarize_ms(latencies_s: Sequence[float]) -> dict[str, Any]:
    ms = [x * 1000 for x in latencies_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
        # Below MIN_P99_SAMPLES the "p99" is the worst sample or nearly: say max of n.
        "p99_valid": len(ms) >= MIN_P99_SAMPLES,
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
