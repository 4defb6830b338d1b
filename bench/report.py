"""``python -m bench report``: one run's results JSON -> docs/benchmarks.md and PNG plots.

Everything in the document comes from that one run (and, for the before/after table, from an
earlier run's JSON given with ``--before``); the method text is ``bench/notes.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.stats import MIN_P99_SAMPLES

__all__ = ["TARGETS", "render"]

NOTES = Path(__file__).with_name("notes.md")
ALL_PHASES = ("home", "mixed", "loglevel", "fanout", "memory", "layers", "pull")

# (key in targets.json, measure, target text, passes(value))
TARGETS: tuple[tuple[str, str, str, Any], ...] = (
    (
        "home_feed_sustainable_rps",
        "home-feed-only sustainable rate through the gateway (p99 < 50 ms), req/s",
        ">= 1,000",
        lambda v: v >= 1000,
    ),
    (
        "cpu_ms_per_home_feed_read",
        "CPU per home-feed read, all processes together, ms",
        "<= 1.5",
        lambda v: v <= 1.5,
    ),
    (
        "mixed_sustainable_rps",
        "mixed 60/30/10 sustainable rate (home-feed p99 < 50 ms), req/s",
        ">= 400",
        lambda v: v >= 400,
    ),
    (
        "fanout_vs_raw_zadd",
        "fan-out deliveries/s per post (largest author) / raw ZADD/s on feed-shaped keys",
        ">= 0.30",
        lambda v: v >= 0.30,
    ),
    (
        "fanout_visible_p99_ms",
        "post in every follower's feed, p99 at the mixed sustainable rate, ms",
        "< 1,000",
        lambda v: v < 1000,
    ),
    (
        "push_vs_pull_p99_ratio_300",
        "fan-out on read p99 / home feed p99, reader following 300",
        ">= 5",
        lambda v: v >= 5,
    ),
    (
        "redis_bytes_per_feed_entry",
        "Redis per feed entry, bytes",
        "<= 100",
        lambda v: v <= 100,
    ),
)


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def tail(s: dict[str, Any] | None) -> str:
    """p99 over at least 100 samples; otherwise the worst sample, said as such."""
    if not s:
        return "-"
    n = s.get("ok", s.get("n", 0)) or 0
    if n >= MIN_P99_SAMPLES:
        return _f(s.get("p99_ms"))
    return f"max of {n}: {_f(s.get('max_ms'))}"


def _cpu_total(step: dict[str, Any] | None) -> Any:
    per = ((step or {}).get("cpu") or {}).get("cpu_ms_per_request") or {}
    return per.get("total")


def _cpu_top(step: dict[str, Any] | None, n: int = 4) -> str:
    per = dict(((step or {}).get("cpu") or {}).get("cpu_ms_per_request") or {})
    per.pop("total", None)
    per.pop("harness", None)
    ranked = sorted(per.items(), key=lambda kv: kv[1], reverse=True)[:n]
    return ", ".join(f"{k} {v:.2f}" for k, v in ranked if v > 0) or "-"


def _ladder_table(ladder: dict[str, Any], kind: str, *, fanout: bool = False) -> str:
    rows: list[list[str]] = []
    for step in ladder.get("steps", []):
        s = step["kinds"].get(kind, step["all"])
        redis = step.get("redis") or {}
        row = [
            _f(step["rate"], 0),
            _f(s["achieved_rps"]),
            _f(s["p50_ms"]),
            tail(s),
            str(step["all"]["errors"]),
            _f(_cpu_total(step), 2),
            _cpu_top(step),
            _f(redis.get("command_us_per"), 1),
            _f(redis.get("calls_per"), 1),
        ]
        if fanout:
            lag = step.get("fanout") or {}
            row.append(tail({**lag, "n": lag.get("visible", 0)}) if lag else "-")
        verdict = "pass" if step["passed"] else "fail"
        if step.get("confirmation"):
            verdict += " (confirmed)" if not step["passed"] else " (on rerun)"
        row.append(verdict)
        rows.append(row)
    header = [
        "offered/s",
        f"{kind} achieved/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU ms/req",
        "largest CPU shares (ms/req)",
        "Redis µs/req",
        "Redis cmds/req",
    ]
    if fanout:
        header.append("fan-out lag p99 ms")
    return _table([*header, "verdict"], rows)


def _sustainable_line(ladder: dict[str, Any]) -> str:
    rate = ladder.get("sustainable_rps")
    deciding = ladder.get("deciding_step")
    text = f"**Sustainable rate: {_f(rate, 0)} req/s** ({ladder.get('judged_by', '')}"
    if deciding is not None:
        text += f"; {_f(deciding, 0)}/s failed twice"
    else:
        text += "; every rate offered passed, so the rate is at least this"
    return text + f"; steps of {_f(ladder.get('step_s'), 0)} s)."


def _plot_ladders(results: dict[str, Any], path: Path) -> bool:
    series: list[tuple[str, dict[str, Any], str]] = []
    if results.get("home_feed"):
        series.append(("home feed (platform)", results["home_feed"], "home_feed"))
    if results.get("mixed"):
        series.append(("mixed: home feed (platform)", results["mixed"], "home_feed"))
    for layer, ladder in (results.get("layers") or {}).items():
        series.append((f"layer: {layer}", ladder, layer))
    if not series:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, ladder, kind in series:
        steps = ladder.get("steps", [])
        xs = [st["rate"] for st in steps if kind in st["kinds"]]
        p99 = [st["kinds"][kind]["p99_ms"] for st in steps if kind in st["kinds"]]
        cpu = [_cpu_total(st) for st in steps if kind in st["kinds"]]
        axes[0].plot(xs, p99, marker="o", markersize=3, label=label)
        axes[1].plot(xs, cpu, marker="o", markersize=3, label=label)
    axes[0].axhline(50, color="grey", lw=0.8)
    axes[0].set_yscale("log")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("offered load (requests/s)")
    axes[0].set_ylabel("p99 latency (ms, log)")
    axes[0].set_title("p99 by offered rate (line: the 50 ms target)")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("offered load (requests/s)")
    axes[1].set_ylabel("CPU per request, every process (ms, log)")
    axes[1].set_title("CPU per request by offered rate")
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_push_pull(results: dict[str, Any], path: Path) -> bool:
    rows = (results.get("push_vs_pull") or {}).get("by_followees") or []
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r["followees"] for r in rows]
    for key, label in (
        ("push", "home feed (fan-out on write)"),
        ("pull", "fan-out on read, same stack"),
        ("pull_sql_only", "fan-out on read, SQL alone"),
    ):
        ax.plot(xs, [r[key]["p99_ms"] for r in rows], marker="o", label=f"{label} p99")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("accounts the reader follows")
    ax.set_ylabel("p99 latency, sequential requests (ms, log)")
    ax.set_title("push against pull by follow count")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def before_targets(before: dict[str, Any]) -> dict[str, Any]:
    """The target figures of an earlier run; a run from before this benchmark (no
    ``targets``: the old 10 s ladders) gives what it can, judged by the same measure."""
    if "targets" in before:
        return dict(before["targets"])
    mixed = (before.get("workloads") or {}).get("mixed") or {}
    sustainable = None
    visible = None
    for step in sorted(mixed.get("steps", []), key=lambda st: st["rate"]):
        home = step["kinds"].get("home_feed") or {}
        ok = (
            home.get("ok", 0) >= MIN_P99_SAMPLES
            and home.get("p99_ms", math.inf) < 50
            and step["all"].get("errors", 1) == 0
        )
        if not ok:
            break
        sustainable = step["rate"]
        visible = (step.get("fanout") or {}).get("p99_ms")
    memory = (before.get("growth") or {}).get("memory") or {}
    return {
        "mixed_sustainable_rps": sustainable,
        "fanout_visible_p99_ms": visible,
        "redis_bytes_per_feed_entry": memory.get("bytes_per_entry_small_feeds"),
    }


def _targets_section(results: dict[str, Any], before: dict[str, Any] | None) -> str:
    targets = results.get("targets") or {}
    earlier = before_targets(before) if before is not None else {}
    rows = []
    for key, measure, goal, ok in TARGETS:
        value = targets.get(key)
        met = "-" if value is None else ("met" if ok(value) else "not met")
        row = [measure, goal, _f(value, 2), met]
        if before is not None:
            row.insert(2, _f(earlier.get(key), 2))
        rows.append(row)
    header = ["measure", "target", "this run", ""]
    if before is not None:
        header = ["measure", "target", f"before ({_run_name(before)})", "after (this run)", ""]
    return (
        _table(header, rows)
        + "\n\nThe same figures are in `targets.json` beside the run's results JSON "
        "(`bench/results/targets.json` for `make bench`; `null`: not measured)."
    )


def _load(values: Any) -> str:
    return " / ".join(f"{v:.1f}" for v in values) if values else "-"


def _run_name(results: dict[str, Any]) -> str:
    return str((results.get("meta") or {}).get("started_at", "?"))[:16]


def _cpu_breakdown(step: dict[str, Any] | None) -> str:
    per = dict(((step or {}).get("cpu") or {}).get("cpu_ms_per_request") or {})
    if not per:
        return "(not measured)"
    total = per.pop("total", None)
    harness = per.pop("harness", None)
    rows = [[k, _f(v, 3)] for k, v in sorted(per.items(), key=lambda kv: -kv[1])]
    rows.append(["**all platform processes**", f"**{_f(total, 3)}**"])
    rows.append(["(the harness: load generator and run, not counted)", _f(harness, 3)])
    cpu = (step or {}).get("cpu") or {}
    other = cpu.get("other_cpu_s")
    wall = cpu.get("wall_s")
    note = ""
    if other is not None and wall:
        note = (
            f"\n\nMeanwhile the rest of the machine (other engineers' work) used "
            f"{_f(other / wall, 2)} cores of 2 on average."
        )
    return _table(["process group", "ms of CPU per request"], rows) + note


def _fanout_section(fan: dict[str, Any]) -> str:
    rows = []
    for r in fan.get("by_followers", []):
        redis = r.get("redis") or {}
        cpu = (r.get("cpu") or {}).get("cpu_ms_per_request") or {}
        rows.append(
            [
                _f(r["followers"], 0),
                str(r["posts"]),
                _f(r["p50_ms"]),
                tail({**r, "n": r["visible"]}),
                _f(r.get("deliveries_per_s_per_post_median"), 0),
                _f(redis.get("command_us_per"), 2),
                _f(redis.get("calls_per"), 2),
                _f(cpu.get("total", 0) * 1000 if cpu else None, 1),
                str(r["missing_deliveries"]),
            ]
        )
    raw = fan.get("raw_zadd") or {}
    text = _table(
        [
            "followers",
            "posts",
            "lag p50 ms",
            "lag p99 ms",
            "deliveries/s per post (median)",
            "Redis µs/delivery",
            "Redis cmds/delivery",
            "CPU µs/delivery",
            "missing",
        ],
        rows,
    )
    if raw:
        text += "\n\n" + _table(
            ["raw baseline (redis-cli --pipe, no client library)", "per second", "server µs each"],
            [
                ["ZADD", _f(raw.get("zadd_per_s"), 0), _f(raw.get("zadd_server_us"), 2)],
                ["ZADD + ZREMRANGEBYRANK to the cap", _f(raw.get("zadd_trim_per_s"), 0), "-"],
                [
                    "ZREVRANGE 0 9 WITHSCORES",
                    _f(raw.get("zrevrange10_per_s"), 0),
                    _f(raw.get("zrevrange10_server_us"), 2),
                ],
            ],
        )
        text += (
            f"\n\nOn {raw.get('feeds')} keys filled to the cap of {raw.get('cap')} members of "
            f"{raw.get('member_bytes')} bytes (the member size of this run's feeds is in the "
            f"memory section), encoding `{raw.get('encoding')}` "
            f"(`zset-max-listpack-value` {raw.get('zset_max_listpack_value')}); "
            f"{_f(raw.get('bytes_per_entry_at_cap'), 1)} bytes per entry at the cap."
        )
    return text


def _layers_section(results: dict[str, Any]) -> str:
    rows = []
    order = ["bare", "middleware", "jwt", "redis"]
    layers = results.get("layers") or {}
    for layer in order:
        ladder = layers.get(layer)
        if not ladder:
            continue
        at = ladder.get("at_sustainable")
        per = ((at or {}).get("cpu") or {}).get("cpu_ms_per_request") or {}
        own = sum(per.get(k, 0.0) for k in ("bench_app", "bench_nginx", "redis"))
        rows.append(
            [
                layer,
                _f(ladder.get("sustainable_rps"), 0),
                _f(own, 3),
                _f(per.get("total"), 3),
                tail((at or {}).get("kinds", {}).get(layer)),
            ]
        )
    home = results.get("home_feed")
    if home:
        at = home.get("at_sustainable")
        per = ((at or {}).get("cpu") or {}).get("cpu_ms_per_request") or {}
        own = sum(per.get(k, 0.0) for k in ("feed", "post", "nginx", "redis"))
        rows.append(
            [
                "home feed (platform)",
                _f(home.get("sustainable_rps"), 0),
                _f(own, 3),
                _f(per.get("total"), 3),
                tail((at or {}).get("kinds", {}).get("home_feed")),
            ]
        )
    return _table(
        [
            "layer",
            "sustainable req/s",
            "CPU ms/req: app + nginx + Redis (home feed: feed + post + nginx + Redis)",
            "CPU ms/req, every process",
            "p99 ms at that rate",
        ],
        rows,
    )


def _push_pull_section(pp: dict[str, Any]) -> str:
    rows = []
    for r in pp.get("by_followees", []):
        ratio = (
            r["pull"]["p99_ms"] / r["push"]["p99_ms"]
            if r["push"]["p99_ms"] and r["pull"]["p99_ms"]
            else None
        )
        rows.append(
            [
                _f(r["followees"], 0),
                _f(r["push"]["p50_ms"]),
                tail(r["push"]),
                _f(r["pull"]["p50_ms"]),
                tail(r["pull"]),
                tail(r["pull_sql_only"]),
                _f(ratio, 2),
                _f(((r.get("pull_cpu") or {}).get("cpu_ms_per_request") or {}).get("total"), 2),
                _f(((r.get("push_cpu") or {}).get("cpu_ms_per_request") or {}).get("total"), 2),
            ]
        )
    data = pp.get("data_set") or {}
    cross = pp.get("crossover") or {}
    generated = not (data.get("generation_s") or {}).get("cached")
    text = (
        f"Data set `{data.get('template')}`: {_f(data.get('users'), 0)} users, "
        f"{_f(data.get('posts'), 0)} posts with content, {_f(data.get('follows'), 0)} follows, "
        f"{_f((data.get('database_bytes') or 0) / 1e9, 2)} GB; cloned from its template in "
        f"{_f(data.get('clone_s'))} s"
        f"{' (generated in this run)' if generated else ''}"
        ".\n\n"
    )
    text += _table(
        [
            "followees",
            "push p50 ms",
            "push p99 ms",
            "pull p50 ms",
            "pull p99 ms",
            "pull SQL alone p99 ms",
            "pull/push p99",
            "pull CPU ms/req",
            "push CPU ms/req",
        ],
        rows,
    )
    if cross.get("pull_slower_from") is None:
        text += f"\n\nCrossover: {cross.get('note', 'none in the counts measured')}."
    else:
        text += (
            f"\n\nCrossover: fan-out on read is at least as fast as the home feed (p99) up to "
            f"{_f(cross.get('pull_as_fast_up_to'), 0)} followees and slower from "
            f"{_f(cross.get('pull_slower_from'), 0)}"
            f"{'; ' + cross['note'] if cross.get('note') else ''}."
        )
    return text


def render(results_path: Path, doc: Path, img: Path, before_path: Path | None = None) -> None:
    results = json.loads(results_path.read_text())
    before = json.loads(before_path.read_text()) if before_path else None
    img.mkdir(parents=True, exist_ok=True)
    meta = results.get("meta", {})
    m = meta.get("machine", {})
    rel = Path("img")
    out: list[str] = ["# Benchmarks", ""]
    out.append(
        f"Generated by `python -m bench report` from `{results_path.as_posix()}` (one run, "
        f"started {meta.get('started_at', '?')[:19]} UTC, {_f(meta.get('duration_s', 0) / 60)} "
        f"min) on {m.get('cores')} cores ({m.get('cpu')}), {m.get('memory_gb')} GB, shared "
        f"with other work: load average {_load(meta.get('loadavg_start'))} at the start, "
        f"{_load(meta.get('loadavg_end'))} at the end (1, 5 and 15 minutes). Method and "
        "caveats: the last section."
    )
    if meta.get("smoke") or meta.get("short_steps"):
        out += [
            "",
            f"> **Smoke run: {_f(meta.get('step_s'), 0)} s steps, a 60-user graph and a small "
            "pull data set.** These figures check the benchmark's path, not the platform; the "
            "targets' measure needs steps of at least 30 s (`make bench`).",
        ]
    phases = meta.get("phases")
    if phases and set(phases) != set(ALL_PHASES):
        out += ["", f"Phases run: {', '.join(phases)} (the others were left out of this run)."]
    errors = results.get("errors") or {}
    if errors:
        out += ["", "Phases that failed in this run:", ""]
        out += [f"- `{k}`: `{v[:300]}`" for k, v in errors.items()]
    out += ["", "## Targets (issue 14)", "", _targets_section(results, before)]

    home = results.get("home_feed")
    if home:
        out += [
            "",
            "## Home feed only",
            "",
            "Every request `GET /api/v1/me/feed?limit=10` of a random Reed98 user, open loop "
            "through the gateway.",
            "",
            _sustainable_line(home),
            "",
            _ladder_table(home, "home_feed"),
            "",
            "CPU per read by process at the sustainable rate (the lowest step when none passed):",
            "",
            _cpu_breakdown(home.get("at_sustainable")),
        ]
    mixed = results.get("mixed")
    if mixed:
        out += [
            "",
            "## Mixed 60/30/10",
            "",
            "60 % home feed, 30 % a random user's timeline, 10 % new posts, judged by the "
            "home feed's p99 and no error of any kind.",
            "",
            _sustainable_line(mixed),
            "",
            _ladder_table(mixed, "home_feed", fanout=True),
            "",
            "CPU per request (all kinds) by process at the sustainable rate:",
            "",
            _cpu_breakdown(mixed.get("at_sustainable")),
        ]
    log_level = results.get("log_level")
    if log_level:
        rows = []
        for label in ("warning", "info"):
            step = log_level.get(label)
            if step:
                s = step["kinds"].get("home_feed", step["all"])
                rows.append(
                    [
                        label.upper(),
                        _f(step["rate"], 0),
                        _f(s["p50_ms"]),
                        tail(s),
                        _f(_cpu_total(step), 3),
                        _cpu_top(step),
                    ]
                )
        out += [
            "",
            "## Log level",
            "",
            "The same home-feed step with every service at INFO (production's level) and at "
            "WARNING (the rest of this run), one after the other:",
            "",
            _table(
                ["level", "offered/s", "p50 ms", "p99 ms", "CPU ms/read", "largest shares"], rows
            ),
        ]
    if results.get("fanout"):
        out += [
            "",
            "## Fan-out",
            "",
            "An author with N followers (synthetic, in feed_service's Redis) posts three "
            "times, one post at a time; a post's lag runs from its 201 until the last follower's "
            "feed holds it, and its delivery rate is its followers over its own lag. Redis "
            "figures are `INFO commandstats` over the posts, per delivery.",
            "",
            _fanout_section(results["fanout"]),
        ]
    mem = results.get("memory")
    if mem:
        encodings = ", ".join(f"{k}: {v}" for k, v in (mem.get("encodings") or {}).items())
        out += [
            "",
            "## Memory",
            "",
            f"Every Reed98 user's feed as fan-out left it: {_f(mem.get('feeds'), 0)} feeds, "
            f"{_f(mem.get('feed_entries'), 0)} entries, {_f(mem.get('feed_bytes'), 0)} bytes "
            f"(`MEMORY USAGE`): **{_f(mem.get('bytes_per_entry'))} bytes per entry**. Members "
            f"are {mem.get('member_bytes')} bytes; encodings: {encodings or '-'}.",
        ]
    if results.get("layers") or home:
        out += [
            "",
            "## Layers",
            "",
            "`bench/bare_app.py` serves `GET /api/v1/me/feed` one layer at a time behind an "
            "nginx rendered from the platform's own gateway template (same location, workers "
            "and proxy settings); each layer has its own ladder, judged like the home feed.",
            "",
            _layers_section(results),
        ]
    if results.get("push_vs_pull"):
        out += [
            "",
            "## Push against pull",
            "",
            "Sequential requests (one at a time) for readers following N accounts: the home "
            "feed through the platform, against fan-out on read through the same stack "
            "(`bench/bare_app.py` layer `pull`: middleware, JWT, response model, gateway) with "
            "the per-author LATERAL query, hydrated with the authors.",
            "",
            _push_pull_section(results["push_vs_pull"]),
        ]
    plots = []
    if _plot_ladders(results, img / "bench-ladders.png"):
        plots.append(f"![ladders]({(rel / 'bench-ladders.png').as_posix()})")
    if _plot_push_pull(results, img / "bench-push-pull.png"):
        plots.append(f"![push against pull]({(rel / 'bench-push-pull.png').as_posix()})")
    if plots:
        out += ["", "## Plots", "", *plots]
    out += ["", NOTES.read_text().strip(), ""]
    doc.write_text("\n".join(out))
