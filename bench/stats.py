"""Latency statistics: nearest-rank percentiles and per-request-type summaries."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "MIN_P99_SAMPLES",
    "PERCENTILES",
    "Summary",
    "passes",
    "percentile",
    "summarize",
    "sustainable_rate",
    "tail_label",
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


MIN_P99_SAMPLES = 100
"""Below this many samples a "p99" is the worst sample or nearly: it is reported as max of n."""


def tail_label(values: Sequence[float] | int, p99_ms: float, max_ms: float) -> str:
    """``p99 12.3 ms`` over at least :data:`MIN_P99_SAMPLES` samples, else ``max of n 12.3 ms``."""
    n = values if isinstance(values, int) else len(values)
    if n >= MIN_P99_SAMPLES:
        return f"p99 {p99_ms:.1f} ms"
    return f"max of {n} {max_ms:.1f} ms"


def passes(
    summary: Summary,
    *,
    p99_limit_ms: float = 50.0,
    max_error_rate: float = 0.0,
    min_samples: int = MIN_P99_SAMPLES,
) -> bool:
    """The target's measure: p99 under the limit over enough samples, no (or few) errors.

    A step with fewer than ``min_samples`` successes cannot show a p99 and does not pass.
    """
    return (
        summary.ok >= min_samples
        and summary.p99_ms < p99_limit_ms
        and summary.error_rate <= max_error_rate
    )


def sustainable_rate(
    summaries: Iterable[Summary],
    *,
    p99_limit_ms: float = 50.0,
    max_error_rate: float = 0.0,
    min_samples: int = MIN_P99_SAMPLES,
) -> float | None:
    """The highest offered rate at which that step and every lower one pass (monotone).

    The steps are taken in order of offered rate; the first failing step ends the count, so a
    higher step that passes by luck after a failure is not the sustainable rate. ``None`` when
    the lowest step already fails.
    """
    best: float | None = None
    for summary in sorted(summaries, key=lambda s: s.offered_rps):
        if not passes(
            summary,
            p99_limit_ms=p99_limit_ms,
            max_error_rate=max_error_rate,
            min_samples=min_samples,
        ):
            break
        best = summary.offered_rps
    return best
