"""CPU time per process group from ``/proc``: the benchmark's headline efficiency figure.

Latency on a machine shared with other work moves with the neighbours; the CPU a request
costs does much less. A group is a root process and every descendant (uvicorn's workers,
PostgreSQL's backends, nginx's workers, the Erlang VM under RabbitMQ's start script). A
group's time is each member's ``utime + stime`` plus ``cutime + cstime``, the time of the
children it has already reaped, so a PostgreSQL backend that ends between two snapshots is
still counted (in its parent's ``cutime``) and the difference of two snapshots is the CPU
the group spent in between.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuMeter", "CpuSample", "group_seconds", "machine_busy_seconds", "per_request_ms"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")


@dataclass(frozen=True)
class _Stat:
    ppid: int
    own_ticks: int  # utime + stime
    reaped_ticks: int  # cutime + cstime


def _read_stat(pid: int) -> _Stat | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or parentheses itself.
    fields = text.rpartition(")")[2].split()
    # After the name: state, ppid, ..., utime (14th field of the line), stime, cutime, cstime.
    return _Stat(
        ppid=int(fields[1]),
        own_ticks=int(fields[11]) + int(fields[12]),
        reaped_ticks=int(fields[13]) + int(fields[14]),
    )


def _all_stats() -> dict[int, _Stat]:
    stats: dict[int, _Stat] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _read_stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    return stats


def group_seconds(roots: Mapping[str, int | None]) -> dict[str, float]:
    """CPU seconds so far of each root process and its descendants (0 when gone), a
    descendant that is itself a root being left to its own group."""
    stats = _all_stats()
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    out: dict[str, float] = {}
    # A group stops where another group begins: the harness starts the platform's processes,
    # and each is counted once, in its own group.
    other_roots = {r for r in roots.values() if r is not None}
    for name, root in roots.items():
        ticks = 0
        todo = [root] if root is not None and root in stats else []
        seen: set[int] = set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            ticks += stats[pid].own_ticks + stats[pid].reaped_ticks
            todo.extend(c for c in children.get(pid, ()) if c not in other_roots)
        out[name] = ticks / _TICK
    return out


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every core, everyone's work) so far."""
    first = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds of each group spent between two snapshots, and of the whole machine."""

    seconds: dict[str, float]
    machine_s: float
    wall_s: float

    @property
    def platform_s(self) -> float:
        return sum(v for k, v in self.seconds.items() if not k.startswith("harness"))

    def as_dict(self, requests: int | None = None) -> dict[str, object]:
        out: dict[str, object] = {
            "wall_s": self.wall_s,
            "cpu_s": self.seconds,
            "platform_cpu_s": self.platform_s,
            # Everything else the machine did meanwhile: the neighbours' share of the cores.
            "machine_cpu_s": self.machine_s,
            "other_cpu_s": max(0.0, self.machine_s - sum(self.seconds.values())),
        }
        if requests:
            out["requests"] = requests
            out["cpu_ms_per_request"] = per_request_ms(self, requests)
        return out


def per_request_ms(sample: CpuSample, requests: int) -> dict[str, float]:
    """Milliseconds of CPU per request, per group and for the platform (``total``)."""
    if requests <= 0:
        return {}
    out = {name: s * 1000 / requests for name, s in sample.seconds.items()}
    out["total"] = sample.platform_s * 1000 / requests
    return out


@dataclass
class CpuMeter:
    """Snapshots of named process groups; ``harness*`` groups are kept out of the total."""

    roots: dict[str, int | None]

    def start(self) -> tuple[dict[str, float], float, float]:
        return group_seconds(self.roots), machine_busy_seconds(), time.monotonic()

    def stop(self, started: tuple[dict[str, float], float, float]) -> CpuSample:
        before, machine_before, t0 = started
        after = group_seconds(self.roots)
        return CpuSample(
            seconds={k: max(0.0, after[k] - before.get(k, 0.0)) for k in after},
            machine_s=machine_busy_seconds() - machine_before,
            wall_s=time.monotonic() - t0,
        )
