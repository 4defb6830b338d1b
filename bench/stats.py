"""Latency statistics: nearest-rank percentiles and per-request-type summaries."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "PERCENTILES",
    "Summary",
    "percentile",
    "summarize",
    "sustainable_rate",
]

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``.

    Nearest rank never interpolates, so p99.9 of 100 samples is the worst sample rather than a
    value between the two worst: the tail is not flattered when samples are few.
    """
    if not values:
        return math.nan
    if not 0.0 < q <= 100.0:
        raise ValueError(f"percentile out of range: {q}")
    ordered = sorted(values)
    rank = math.ceil(q / 100.0 * len(ordered))
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True)
class Summary:
    """What one request type did during one run at one offered rate."""

    kind: str
    offered_rps: float
    achieved_rps: float  # successful responses per second of the measurement window
    count: int
    ok: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    kind: str,
    latencies_s: Sequence[float],
    errors: int,
    *,
    offered_rps: float,
    window_s: float,
) -> Summary:
    """Summarise successful latencies (seconds) into milliseconds; errors count apart."""
    ms = [x * 1000.0 for x in latencies_s]
    p50, p90, p99, p999 = (percentile(ms, q) for q in PERCENTILES)
    return Summary(
        kind=kind,
        offered_rps=offered_rps,
        achieved_rps=len(ms) / window_s if window_s > 0 else 0.0,
        count=len(ms) + errors,
        ok=len(ms),
        errors=errors,
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        p999_ms=p999,
        mean_ms=sum(ms) / len(ms) if ms else math.nan,
        max_ms=max(ms) if ms else math.nan,
    )


def sustainable_rate(
    summaries: Iterable[Summary], *, p99_limit_ms: float = 100.0, max_error_rate: float = 0.01
) -> float | None:
    """The highest offered rate whose p99 stays under the limit with (almost) no errors.

    Taken literally (the highest passing rate, not the last one before the first failure): on
    a machine shared with other work a low rate can fail by noise while higher ones pass; the
    full ladder is reported next to it.
    """
    best: float | None = None
    for summary in summaries:
        if (
            summary.ok > 0
            and summary.p99_ms < p99_limit_ms
            and summary.error_rate <= max_error_rate
            and (best is None or summary.offered_rps > best)
        ):
            best = summary.offered_rps
    return best
