"""The report from a run's results: targets, the smoke banner, p99 only over 100 samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import render


def _summary(n: int, p99: float, mx: float) -> dict[str, Any]:
    return {
        "kind": "home_feed",
        "offered_rps": 40.0,
        "achieved_rps": 40.0,
        "count": n,
        "ok": n,
        "errors": 0,
        "p50_ms": 5.0,
        "p90_ms": 8.0,
        "p99_ms": p99,
        "p999_ms": mx,
        "mean_ms": 5.5,
        "max_ms": mx,
    }


def _step(rate: float, n: int, passed: bool) -> dict[str, Any]:
    s = _summary(n, 12.0, 31.0)
    return {
        "rate": rate,
        "all": s,
        "kinds": {"home_feed": s},
        "passed": passed,
        "cpu": {
            "cpu_ms_per_request": {"feed": 1.5, "post": 0.5, "harness": 3.0, "total": 2.0},
            "other_cpu_s": 5.0,
            "wall_s": 5.0,
        },
        "redis": {"command_us_per": 12.0, "calls_per": 9.0},
    }


def test_report_from_a_smoke_run(tmp_path: Path) -> None:
    home: dict[str, Any] = {
        "steps": [_step(40, 200, True), _step(80, 60, False)],
        "sustainable_rps": 40,
        "deciding_step": 80,
        "judged_by": "home_feed p99 < 50 ms over >= 100 samples, no errors",
        "step_s": 5,
    }
    home["at_sustainable"] = home["steps"][0]
    results = {
        "meta": {"smoke": True, "step_s": 5, "short_steps": True, "duration_s": 200},
        "home_feed": home,
        "targets": {"home_feed_sustainable_rps": 40, "cpu_ms_per_home_feed_read": 2.0},
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    doc = tmp_path / "benchmarks.md"
    render(path, doc, tmp_path / "img")
    text = doc.read_text()
    assert "Smoke run: 5 s steps" in text
    assert "**Sustainable rate: 40 req/s**" in text and "80/s failed twice" in text
    # 200 samples give a p99; 60 give only their worst.
    assert "| 12.0 |" in text and "max of 60: 31.0" in text
    assert (
        "| CPU per home-feed read, all processes together, ms | <= 1.5 | 2.00 | not met |" in text
    )
    assert "listpack" not in text  # no stale claim of the old document
    assert (tmp_path / "img" / "bench-ladders.png").exists()
