"""``python -m bench report``: results JSON -> docs/benchmarks.md and PNG plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.stats import Summary, sustainable_rate

__all__ = ["render"]

NOTES = Path(__file__).with_name("notes.md")
KIND_LABELS = {
    "home_feed": "home feed",
    "user_timeline": "user timeline",
    "new_post": "new post",
    "all": "all",
    "bare": "bare FastAPI",
}


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x" if a / b >= 0.1 else f"{a / b:.3f}x"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _workload_table(workload: dict[str, Any]) -> str:
    rows: list[list[str]] = []
    for step in workload["steps"]:
        for kind, s in sorted(step["kinds"].items()):
            rows.append(
                [
                    _f(step["rate"], 0),
                    KIND_LABELS.get(kind, kind),
                    _f(s["offered_rps"]),
                    _f(s["achieved_rps"]),
                    _f(s["p50_ms"]),
                    _f(s["p90_ms"]),
                    _f(s["p99_ms"]),
                    _f(s["p999_ms"]),
                    str(s["errors"]),
                ]
            )
    return _table(
        [
            "offered total/s",
            "request",
            "offered/s",
            "achieved/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "errors",
        ],
        rows,
    )


def _plot_latency(results: dict[str, Any], path: Path) -> None:
    workloads = results.get("workloads", {})
    names = [n for n in ("mixed", "read", "write") if n in workloads]
    fig, grid = plt.subplots(2, 2, figsize=(11, 8), squeeze=False)
    panels = list(grid.flat)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(panels, names, strict=False):
        steps = workloads[name]["steps"]
        kinds = sorted({k for st in steps for k in st["kinds"]})
        # One colour per request type: p99 solid, p50 dashed.
        for n, kind in enumerate(kinds):
            xs = [st["rate"] for st in steps if kind in st["kinds"]]
            for q, style in (("p99_ms", "-"), ("p50_ms", "--")):
                ys = [st["kinds"][kind][q] for st in steps if kind in st["kinds"]]
                ax.plot(
                    xs,
                    ys,
                    style,
                    color=colors[n % len(colors)],
                    marker="o",
                    markersize=4,
                    label=f"{KIND_LABELS.get(kind, kind)} {q[:3]}",
                )
        ax.axhline(100, color="grey", lw=0.8)
        ax.set_title(f"{name} workload (through the gateway)")
        ax.set_xlabel("offered load (requests/s)")
        ax.set_ylabel("latency (ms, log)")
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    bare = results.get("baselines", {}).get("bare_fastapi")
    ax = panels[-1]
    if bare:
        xs = [st["rate"] for st in bare["steps"]]
        for q, style in (("p99_ms", "-"), ("p50_ms", "--")):
            ax.plot(
                xs,
                [st["all"][q] for st in bare["steps"]],
                style,
                color="black",
                marker="o",
                markersize=4,
                label=f"open-loop generator {q[:3]}",
            )
        wrk = (bare.get("wrk") or {}).get("requests_per_s")
        if wrk:
            ax.axvline(wrk, color="tab:red", lw=1.2)
            ax.text(
                wrk,
                ax.get_ylim()[1],
                f" wrk (closed loop)\n {wrk:,.0f}/s",
                color="tab:red",
                fontsize=8,
                va="top",
                ha="right",
            )
        ax.axhline(100, color="grey", lw=0.8)
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    ax.set_title("baseline: bare FastAPI/uvicorn, no gateway")
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("latency (ms, log)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cdf(ax: Any, values: Sequence[float], label: str) -> None:
    if not values:
        return
    xs = sorted(values)
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step(xs, ys, where="post", label=f"{label} (n={len(xs)})")


def _plot_fanout(results: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, ax in (("mixed", axes[0]), ("write", axes[1])):
        for step in results.get("workloads", {}).get(name, {}).get("steps", []):
            if "fanout" in step:
                _cdf(ax, step["fanout"]["lags_ms"], f"{step['rate']:.0f}/s offered")
        ax.axvline(1000, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("fan-out lag: 201 to in every follower's feed (ms)")
        ax.set_ylabel("fraction of posts")
        ax.set_title(f"fan-out lag CDF, {name} workload")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_growth(results: dict[str, Any], path: Path) -> None:
    growth = results.get("growth", {})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    fan = growth.get("fanout", [])
    if fan:
        axes[0].plot([r["followers"] for r in fan], [r["p50_ms"] for r in fan], marker="o")
        axes[0].set_xscale("log")
        axes[0].set_yscale("log")
        axes[0].set_xlabel("followers of the author")
        axes[0].set_ylabel("fan-out lag p50 (ms)")
        axes[0].set_title("fan-out cost (hybrid off)")
    reads = growth.get("reads", [])
    if reads:
        xs = [r["followees"] for r in reads]
        axes[1].plot(
            xs, [r["api"]["p99_ms"] for r in reads], marker="o", label="home feed via API p99"
        )
        axes[1].plot(
            xs,
            [r["fanout_on_read_pg"]["p99_ms"] for r in reads],
            marker="s",
            label="fan-out on read (PostgreSQL join) p99",
        )
        axes[1].set_xscale("log")
        axes[1].set_yscale("log")
        axes[1].set_xlabel("accounts the reader follows")
        axes[1].set_ylabel("latency (ms)")
        axes[1].set_title("read cost by followees")
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _max_throughput(workload: dict[str, Any]) -> float | None:
    rates = [
        st["all"]["achieved_rps"]
        for st in workload["steps"]
        if st["all"]["count"] and st["all"]["errors"] / st["all"]["count"] < 0.01
    ]
    return max(rates, default=None)


def _at_sustainable(workload: dict[str, Any], kind: str) -> dict[str, Any] | None:
    rate = workload["sustainable_rps"].get("all")
    for step in workload["steps"]:
        if rate is not None and step["rate"] == rate:
            result: dict[str, Any] | None = step["kinds"].get(kind)
            if result is not None and "fanout" in step:
                result = {**result, "fanout": step["fanout"]}
            return result
    return None


def _recompute_sustainable(r: dict[str, Any]) -> None:
    """Sustainable rates from the recorded steps, by the current definition in bench.stats."""

    def summary(d: dict[str, Any]) -> Summary:
        return Summary(**{k: d[k] for k in Summary.__dataclass_fields__})

    for workload in r.get("workloads", {}).values():
        steps = workload["steps"]
        kinds = {k for st in steps for k in st["kinds"]}
        sus: dict[str, float | None] = {
            k: sustainable_rate([summary(st["kinds"][k]) for st in steps if k in st["kinds"]])
            for k in kinds
        }
        sus["all"] = sustainable_rate([summary(st["all"]) for st in steps])
        workload["sustainable_rps"] = sus
    bare = r.get("baselines", {}).get("bare_fastapi")
    if bare:
        bare["sustainable_rps"] = sustainable_rate([summary(st["all"]) for st in bare["steps"]])


def _follows_text(load: dict[str, Any]) -> str:
    in_flight = load.get("follow_concurrency")
    through = (
        f"{load.get('api_follows'):,} follows through the API in {_f(load.get('follow_s'))} s "
        f"({_f(load.get('follows_per_s'))}/s"
        + (f" with {in_flight} in flight)" if in_flight else ")")
    )
    if not load.get("direct_follows"):
        return f"{through}, every follow of the graph; "
    budget = load.get("follow_budget_s")
    if budget:
        through += f", as many as fitted in a budget of {_f(budget, 0)} s,"
    return (
        f"{through} and the other {load.get('direct_follows'):,} straight into Neo4j in "
        f"{_f(load.get('direct_follows_s'))} s (see the notes below); "
    )


def _generator_text(bare: dict[str, Any], services_max: float | None) -> str:
    """What the load generator itself reaches, against wrk on the same bare endpoint."""
    gen = bare.get("generator")
    wrk = bare.get("wrk") or {}
    if not gen:
        return (
            "- **Load generator**: one asyncio process with httpx, sharing its event loop with "
            "the fan-out watcher; its ceiling is in the bare FastAPI baseline below."
        )
    text = (
        f"- **Load generator**: {gen['library']} in {gen['processes']} worker processes of its "
        "own (each sends a round-robin share of the Poisson schedule, itself a Poisson process; "
        "latency samples are merged; the run's own process keeps the fan-out watcher). Its "
        "ceiling, measured in this run against the bare FastAPI endpoint (one uvicorn process, "
        "no gateway, nothing behind it): "
        f"{_f(bare.get('max_achieved_rps'), 0)} requests/s achieved at most, sustainable "
        f"(p99 < 100 ms) {_f(bare.get('sustainable_rps'), 0)}/s"
    )
    if wrk.get("requests_per_s"):
        text += (
            f"; `wrk -t{wrk['threads']} -c{wrk['connections']}` (C, closed loop, the reference) "
            f"drove the same endpoint at {_f(wrk['requests_per_s'], 0)}/s, so the generator "
            f"reaches {_ratio(bare.get('max_achieved_rps'), wrk['requests_per_s'])} of what the "
            "endpoint serves on this machine, with generator, server and the rest sharing two "
            "cores."
        )
    gen_max = bare.get("max_achieved_rps") or 0
    if services_max and gen_max >= 5 * services_max:
        text += (
            f" The platform's best throughput below ({_f(services_max, 0)}/s) is "
            f"{_ratio(services_max, gen_max)} of that: the services, not the generator, are "
            "the bound."
        )
    return text + "\n"


def render(results_path: Path, doc: Path, img: Path) -> None:
    r: dict[str, Any] = json.loads(results_path.read_text())
    _recompute_sustainable(r)
    img.mkdir(parents=True, exist_ok=True)
    _plot_latency(r, img / "bench-latency.png")
    _plot_fanout(r, img / "bench-fanout-cdf.png")
    _plot_growth(r, img / "bench-growth.png")
    rel = Path("img")
    meta = r["meta"]
    m = meta["machine"]
    versions = meta.get("versions", {})
    w = r.get("workloads", {})
    base = r.get("baselines", {})
    out: list[str] = []
    add = out.append

    add("# Benchmarks\n")
    add(
        "Generated by `python -m bench report` from "
        f"`{results_path.as_posix()}` (run of {meta['started_at'][:19]} UTC, "
        f"{_f(meta.get('duration_s', 0) / 60, 1)} min{', quick mode' if meta['quick'] else ''}). "
        "Every figure below was measured in that one run; nothing is estimated.\n"
    )

    # ---------------------------------------------------------------- headline
    mixed = w.get("mixed")
    read = w.get("read")
    write = w.get("write")
    fan_read = r.get("fanout_on_read", {})
    big = r.get("fanout_big", {})
    py = base.get("redis_python", {})
    tool = base.get("redis_benchmark", {})
    bare = base.get("bare_fastapi", {})
    add("## Headline\n")
    rows: list[list[str]] = []
    if mixed:
        sus = mixed["sustainable_rps"]
        at = _at_sustainable(mixed, "home_feed")
        best = min(mixed["steps"], key=lambda st: st["all"]["p99_ms"])
        rows.append(
            [
                "mixed workload: highest offered rate with p99 < 100 ms (all requests)",
                "-",
                (_f(sus.get("all"), 0) + " req/s")
                if sus.get("all") is not None
                else f"none; best step {best['rate']:.0f} req/s with p99 "
                f"{_f(best['all']['p99_ms'])} ms",
            ]
        )
        rows.append(
            [
                "mixed workload: highest throughput with < 1 % errors",
                "-",
                _f(_max_throughput(mixed), 0) + " req/s",
            ]
        )
        if at is None:
            at = {**best["kinds"]["home_feed"], "fanout": best.get("fanout")}
        rows.append(
            [
                "home-feed read p99 at that rate (or at the best step)",
                "< 50 ms",
                _f(at["p99_ms"]) + " ms" if at else "-",
            ]
        )
        fan = at.get("fanout") if at else None
        rows.append(
            [
                "followed author's post in all followers' feeds, p99, under the mixed workload",
                "< 1 s",
                _f(fan["p99_ms"]) + " ms" if fan else "-",
            ]
        )
    best_delivery = max(
        [
            s["fanout"]["deliveries_per_s"] or 0
            for s in (write or {}).get("steps", [])
            if "fanout" in s
        ]
        + [g.get("deliveries_per_s") or 0 for g in r.get("growth", {}).get("fanout", [])],
        default=0,
    )
    raw_zadd = tool.get("zadd_per_s") or py.get("zadd_per_s")
    rows.append(
        [
            "fan-out deliveries/s vs raw pipelined ZADD/s (redis-benchmark -P 1000)",
            ">= 25 %",
            f"{_f(best_delivery, 0)} / {_f(raw_zadd, 0)} = {_ratio(best_delivery, raw_zadd)}",
        ]
    )
    if big:
        on = big.get("hybrid_on", {})
        off = big.get("hybrid_off", {})
        rows.append(
            [
                f"{big['followers']:,}-follower post visible to all followers, hybrid on (p99)",
                "< 1 s",
                _f(on.get("p99_ms")) + " ms",
            ]
        )
        rows.append(
            [
                "the same with hybrid off (full fan-out, p99)",
                "-",
                _f(off.get("p99_ms")) + " ms",
            ]
        )
    if fan_read:
        api = fan_read["api_home_feed"]["p99_ms"]
        pg = fan_read["pg_join"]["p99_ms"]
        zrev = fan_read["redis_zrevrange"]["p99_ms"]
        rows.append(
            [
                "home-feed p99 vs fan-out on read, reader following "
                f"{fan_read['reader_followees']}",
                ">= 10x faster",
                f"{_f(api)} ms (whole API request) vs {_f(pg)} ms (SQL alone): "
                f"{_ratio(pg, api)}; Redis read alone {_f(zrev, 2)} ms: {_ratio(pg, zrev)}",
            ]
        )
    if bare:
        wrk_rps = (bare.get("wrk") or {}).get("requests_per_s")
        rows.append(
            [
                "load generator's own ceiling: bare FastAPI endpoint, max achieved open loop"
                + (" vs wrk (closed loop)" if wrk_rps else ""),
                "not the bound",
                f"{_f(bare.get('max_achieved_rps'), 0)}/s"
                + (
                    f" vs {_f(wrk_rps, 0)}/s = {_ratio(bare.get('max_achieved_rps'), wrk_rps)}"
                    if wrk_rps
                    else ""
                ),
            ]
        )
    add(_table(["measure", "target", "measured"], rows) + "\n")

    # ---------------------------------------------------------------- machine and method
    add("## Machine, versions, settings\n")
    add(
        f"- {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB memory, Linux {m['kernel']}; "
        "**everything ran on this one machine**: the five services, nginx, PostgreSQL, Redis, "
        "RabbitMQ, Neo4j, Mailpit *and the load generator*, which competes with the services "
        "for the same cores (other engineers' test runs shared the machine too). Absolute "
        "figures are therefore low; the ratios against baselines measured in the same run are "
        "the meaningful part. The generator's own ceiling is measured (see Method)."
    )
    if "loadavg_start" in meta:
        add(
            f"- Load average (1, 5, 15 min) at the start {meta['loadavg_start']}, at the end "
            f"{meta.get('loadavg_end')}: the other work on the machine during the run."
        )
    add(
        "- Versions: "
        + "; ".join(f"{k} {v}" for k, v in versions.items())
        + f"; Python {meta['python']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["packages"].items())
        + "."
    )
    settings = meta["settings"]
    add(
        "- Service settings that differ from production: "
        + ", ".join(f"`{k}={v}`" for k, v in settings.items() if k != "step_s")
        + ". bcrypt cost 4 (not 12) and raised auth rate limits exist only so the graph can be "
        "registered and logged in through the public API from one address in seconds; every "
        "other request path is the production one. Per-request INFO logs are off (WARNING) "
        "so the figures measure the services, not log writing. The feed service ran with the "
        "hybrid path off (threshold above any account) except in the hybrid-on measurement.\n"
    )
    add("## Method\n")
    g = r.get("graph", {})
    load = r.get("load", {})
    add(
        f"- **Graph**: {g.get('name')} ({g.get('users')} users, {g.get('follows'):,} follows: "
        "every "
        "undirected edge followed in both directions, as DeathStarBench's loader does; followers "
        f"per user median {g.get('followers_median')}, max {g.get('followers_max')}). Loaded "
        "through the gateway: registration + login "
        f"{_f(load.get('register_login_s'))} s ({_f(load.get('registrations_per_s'))}/s); "
        + _follows_text(load)
        + "then every user read their feed once (so "
        f"every feed is built, as an active user's is) and {load.get('seed_posts')} posts (one "
        "per user) were written before measuring."
    )
    add(
        "- **Load**: open loop through the nginx gateway. Arrivals are a Poisson process at the "
        "offered rate, scheduled against the clock in advance; each request's latency is "
        "measured from its *intended* send time, so a stall of the server counts against every "
        "request that should have been sent during it (no coordinated omission). Each step runs "
        f"{settings.get('step_s')} s, then waits until RabbitMQ's queues are empty. Users are "
        "drawn uniformly. Mixed = 60 % `GET /me/feed?limit=10`, 30 % "
        "`GET /users/{id}/posts?limit=10`, 10 % `POST /posts` (DeathStarBench's mix); read = "
        "the two reads 2:1; write = posts only. Errors (non-2xx, timeouts after 10 s, requests "
        "refused by the generator with 512 in flight in total) are counted apart and not in "
        "latencies. "
        "The sustainable rate is the highest offered rate of the ladder with p99 under "
        "100 ms and under 1 % errors."
    )
    add(
        "- **Fan-out lag**: from the moment `POST /posts` answers 201 until the post is in every "
        "follower's home-feed sorted set in feed_service's Redis (what the next `GET /me/feed` "
        "returns), polled every 10 ms; fan-out writes a batch of followers in one pipeline, so "
        "the last follower of each batch is probed, and a full check afterwards counts any "
        "follower that never got it (`missing`). Deliveries/s = follower feeds written / "
        "(last visible - first 201)."
    )
    add(
        "- **Large accounts**: authors with 10 ... 100,000 followers are real accounts (registered "
        "through the API) whose followers are synthetic ids written straight into feed_service's "
        "Redis with feed_service's own key functions (`feed_service.repository.keys`): the "
        "follower replica set and each follower's feed marker (a feed without it counts as "
        "inactive and is skipped). Loading 100,000 accounts through the API would take far "
        "longer than the run; fan-out reads only these keys. Neo4j and the auth/post databases "
        "do not hold the synthetic followers. With the hybrid path on, the large author's post "
        "is not fanned out: it is visible once it is in the author's recent-post index, merged "
        "at read time; a real follower also polls its home feed through the API "
        "(`witness_api_ms`)."
    )
    add(
        _generator_text(
            bare, max((_max_throughput(x) or 0 for x in w.values()), default=None) or None
        )
    )

    # ---------------------------------------------------------------- workloads
    add("## Throughput and latency\n")
    add(f"![latency against offered load]({(rel / 'bench-latency.png').as_posix()})\n")
    for name in ("mixed", "read", "write"):
        if name not in w:
            continue
        sus = w[name]["sustainable_rps"]
        add(f"### {name.capitalize()} workload\n")
        add(
            "Sustainable offered rate (p99 < 100 ms, < 1 % errors): "
            + ", ".join(
                f"{KIND_LABELS.get(k, k)} {_f(v, 0) if v is not None else 'none of the rates'}"
                for k, v in sorted(sus.items())
            )
            + " (per request type: its share of the offered rate).\n"
        )
        add(_workload_table(w[name]) + "\n")

    # ---------------------------------------------------------------- fan-out
    add("## Fan-out\n")
    add(f"![fan-out lag CDF]({(rel / 'bench-fanout-cdf.png').as_posix()})\n")
    rows = []
    for name in ("mixed", "write"):
        for step in w.get(name, {}).get("steps", []):
            fan = step.get("fanout")
            if fan:
                rows.append(
                    [
                        name,
                        _f(step["rate"], 0),
                        str(fan["posts"]),
                        _f(fan["p50_ms"]),
                        _f(fan["p99_ms"]),
                        _f(fan["max_ms"]),
                        _f((fan["within_1s"] or 0) * 100) + " %",
                        _f(fan["deliveries_per_s"], 0),
                        str(fan["missing_deliveries"]),
                    ]
                )
    add("Typical authors (socfb-Reed98, under load):\n")
    add(
        _table(
            [
                "workload",
                "offered/s",
                "posts",
                "lag p50 ms",
                "lag p99 ms",
                "max ms",
                "within 1 s",
                "deliveries/s",
                "missing",
            ],
            rows,
        )
        + "\n"
    )
    if big:
        add(
            f"One author with {big['followers']:,} followers (3 posts each way, system otherwise "
            "idle):\n"
        )
        rows = []
        for label, key in (("hybrid off (full fan-out)", "hybrid_off"), ("hybrid on", "hybrid_on")):
            d = big.get(key, {})
            rows.append(
                [
                    label,
                    _f(d.get("p50_ms")),
                    _f(d.get("p99_ms")),
                    _f(d.get("deliveries_per_s"), 0)
                    if key == "hybrid_off"
                    else "- (not fanned out)",
                    str(d.get("missing_deliveries", "-")),
                ]
            )
        add(_table(["path", "visible p50 ms", "visible p99 ms", "deliveries/s", "missing"], rows))
        witness = big.get("hybrid_on", {}).get("witness_api_ms")
        if witness:
            add(
                "\nA real follower polling `GET /me/feed` through the gateway saw each hybrid post "
                "after " + ", ".join(_f(x) for x in witness) + " ms.\n"
            )

    # ---------------------------------------------------------------- baselines
    add("## Baselines (same run, same machine)\n")
    rows = []
    if tool or py:
        rows.append(
            [
                "Redis ZADD, pipelined",
                f"{_f(tool.get('zadd_per_s'), 0)}/s (redis-benchmark -P 1000); "
                f"{_f(py.get('zadd_per_s'), 0)}/s (redis-py, pipelines of 1000)",
                f"fan-out deliveries/s {_f(best_delivery, 0)} = {_ratio(best_delivery, raw_zadd)} "
                f"of redis-benchmark, {_ratio(best_delivery, py.get('zadd_per_s'))} of redis-py",
            ]
        )
        rows.append(
            [
                "Redis ZREVRANGE 0 9, pipelined",
                f"{_f(tool.get('zrevrange_per_s'), 0)}/s (redis-benchmark); "
                f"{_f(py.get('zrevrange_per_s'), 0)}/s (redis-py)",
                "home-feed reads are one ZREVRANGE each plus hydration: Redis is not the "
                "bound at these rates",
            ]
        )
    if bare:
        ours = _max_throughput(read) if read else None
        rows.append(
            [
                "bare FastAPI/uvicorn endpoint (one process, ten-post JSON, no gateway)",
                f"open loop (this generator): sustainable {_f(bare.get('sustainable_rps'), 0)}/s, "
                f"max achieved {_f(bare.get('max_achieved_rps'), 0)}/s"
                + (
                    f"; wrk (closed loop): {_f(bare['wrk']['requests_per_s'], 0)}/s, "
                    f"p50 {_f(bare['wrk'].get('p50_ms'), 2)} ms, "
                    f"p99 {_f(bare['wrk'].get('p99_ms'), 2)} ms"
                    if (bare.get("wrk") or {}).get("requests_per_s")
                    else ""
                ),
                f"read workload max throughput (< 1 % errors) {_f(ours, 0)}/s = "
                f"{_ratio(ours, bare.get('max_achieved_rps'))} of the bare maximum",
            ]
        )
    if fan_read:
        rows.append(
            [
                "fan-out on read: PostgreSQL join, reader following "
                f"{fan_read['reader_followees']}",
                f"p50 {_f(fan_read['pg_join']['p50_ms'], 2)} ms, p99 "
                f"{_f(fan_read['pg_join']['p99_ms'], 2)} ms (SQL only, no HTTP, no hydration)",
                f"home feed through the gateway p50 {_f(fan_read['api_home_feed']['p50_ms'], 2)}, "
                f"p99 {_f(fan_read['api_home_feed']['p99_ms'], 2)} ms; the Redis read alone p99 "
                f"{_f(fan_read['redis_zrevrange']['p99_ms'], 2)} ms: "
                f"{_ratio(fan_read['pg_join']['p99_ms'], fan_read['redis_zrevrange']['p99_ms'])} "
                "faster at p99",
            ]
        )
    add(_table(["baseline", "measured", "Murmur against it"], rows) + "\n")

    # ---------------------------------------------------------------- growth
    growth = r.get("growth", {})
    add("## Growth\n")
    add(f"![growth]({(rel / 'bench-growth.png').as_posix()})\n")
    mem = growth.get("memory")
    if mem:
        add(
            f"Redis memory per home-feed entry: {_f(mem['bytes_per_entry_small_feeds'])} bytes in "
            f"the Reed98 feeds ({mem['reed98_feed_entries']:,} entries, small sorted sets are "
            f"listpack-encoded), {_f(mem['bytes_per_entry_full_feed'])} bytes in a full feed of "
            f"{mem['full_feed_entries']} entries (skiplist encoding); a member is "
            "`<post uuid>:<author uuid>` (73 bytes) with a double score. A million active "
            "users with full feeds (800 entries) would need about "
            f"{_f((mem['bytes_per_entry_full_feed'] or 0) * 800 * 1e6 / 2**30, 0)} GiB.\n"
        )
    rows = [
        [
            f"{row['followers']:,}",
            _f(row["p50_ms"]),
            _f(row["p99_ms"]),
            _f(row["deliveries_per_s"], 0),
            str(row["missing_deliveries"]),
        ]
        for row in growth.get("fanout", [])
    ]
    if rows:
        add("Fan-out cost by the author's followers (hybrid off, 3 posts each, idle system):\n")
        add(
            _table(["followers", "lag p50 ms", "lag p99 ms", "deliveries/s", "missing"], rows)
            + "\n"
        )
    rows = [
        [
            f"{row['followees']:,}",
            str(row["feed_entries"]),
            _f(row["api"]["p50_ms"], 2),
            _f(row["api"]["p99_ms"], 2),
            _f(row["fanout_on_read_pg"]["p50_ms"], 2),
            _f(row["fanout_on_read_pg"]["p99_ms"], 2),
        ]
        for row in growth.get("reads", [])
    ]
    if rows:
        add(
            "Home-feed read by the number of accounts the reader follows (sequential reads, "
            "idle system; the PostgreSQL column is the SQL alone):\n"
        )
        add(
            _table(
                [
                    "followees",
                    "feed entries",
                    "API p50 ms",
                    "API p99 ms",
                    "fan-out on read p50 ms",
                    "fan-out on read p99 ms",
                ],
                rows,
            )
            + "\n"
        )

    # ---------------------------------------------------------------- notes, reproduce
    if NOTES.exists():
        add(NOTES.read_text().strip() + "\n")
    add("## Reproduce\n")
    add(
        "```sh\n"
        "make bench            # = python -m bench run && python -m bench report <that json>\n"
        "python -m bench run --quick --out /tmp/q.json   # the whole path on a tiny graph\n"
        "python -m bench report bench/results/<run>.json # re-render this page and its plots\n"
        "```\n"
        "The run starts its own PostgreSQL, Redis, RabbitMQ, Neo4j and Mailpit (deploy.local) "
        "and the five services with nginx (deploy.platform) on free ports in a temporary "
        "directory, and stops them at the end (`--keep` keeps the directory with the logs). "
        "It needs the socfb-Reed98 graph at `../shared/datasets/social-graph/socfb-Reed98/` "
        "(cite: Rossi and Ahmed, *The Network Data Repository with Interactive Graph Analytics "
        "and Visualization*, AAAI 2015). Raw results, including every fan-out lag, are in the "
        "JSON.\n"
    )
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(out))
