"""``python -m bench run``: one whole benchmark run on a private platform; results as JSON.

Phases, in order (each records its own failure and the later ones still run):

1. the socfb-Reed98 graph loaded through the API;
2. the home-feed-only ladder and the mixed 60/30/10 ladder through the gateway, each step
   with the CPU every platform process spent (``bench.cpu``), Redis's ``INFO commandstats``
   and, for the mixed ladder, every post's fan-out lag;
3. one home-feed step at the production log level (INFO) beside the same step quiet;
4. fan-out by follower count, per post, against the raw ZADD rate on feed-shaped keys;
5. Redis memory per feed entry;
6. the layered baselines behind a gateway of the platform's own configuration;
7. push (the home feed) against pull (fan-out on read through the same stack) by follow
   count, on the generated data set (``bench.pull_data``).

Each ladder's sustainable rate is monotone (``bench.stats.sustainable_rate``): the highest
rate at which that step and every lower one pass the target's measure (home-feed p99 < 50 ms
over at least 100 samples, no errors); the first failing step is run once more to confirm it
before the ladder ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform as pyplatform
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis.asyncio as aioredis

from bench import baselines
from bench.backing import BenchStack, machine, platform_env
from bench.bare_app import PULL_QUERY
from bench.cpu import CpuMeter
from bench.fanout import Lag, VisibilityWatcher
from bench.graph import Graph, load_edges
from bench.loader import (
    RETRIED,
    Account,
    ApiLoader,
    forget_follower_replicas,
    load_follows_into_neo4j,
    load_synthetic_followers,
)
from bench.loadgen import Call, LoadGenerator, LoadResult, sequential_latencies
from bench.pull_data import PullDataset, sql_latencies
from bench.stats import MIN_P99_SAMPLES, passes, percentile
from deploy.local import PostgresServer, free_port
from deploy.platform.runner import SERVICES
from feed_service.repository import keys

__all__ = ["RunConfig", "lag_summary", "run"]

FEED_DB = 3  # deploy.platform gives feed_service Redis database 3
RAW_DB = 15  # the raw-limit baseline's own database on the same server
IDLE_TTL_MS = 30 * 86_400_000
FANOUT_BATCH = 1000
HYBRID_OFF = 1_000_000_000
FEED_CAP = 800  # feed_service's default feed_cap
P99_LIMIT_MS = 50.0  # the target's measure: home-feed p99 under 50 ms, no errors
T = TypeVar("T")
CACHE = Path(os.environ.get("MURMUR_BENCH_CACHE", Path.home() / ".cache" / "murmur" / "bench"))


@dataclass(frozen=True)
class RunConfig:
    smoke: bool = False
    out: Path = Path("bench/results/latest.json")
    seed: int = 42
    # Seconds per ladder step; None: 30 (5 in the smoke mode, which says so in its output).
    step_seconds: float | None = None
    confirm: bool = True  # rerun the first failing step before ending a ladder
    # Processes sending the open-loop load (each a share of the Poisson rate).
    generator_processes: int = 2
    # Follows made through the public API; None: every edge of the graph.
    api_follows: int | None = None
    follow_concurrency: int = 48
    follow_budget_s: float = 300.0
    pull_users: int | None = None
    pull_posts: int | None = None
    phases: tuple[str, ...] = ("home", "mixed", "loglevel", "fanout", "memory", "layers", "pull")

    @property
    def step_s(self) -> float:
        if self.step_seconds is not None:
            return self.step_seconds
        return 5.0 if self.smoke else 30.0

    @property
    def follows_in_flight(self) -> int:
        return min(self.follow_concurrency, 16) if self.smoke else self.follow_concurrency

    @property
    def follow_seconds(self) -> float:
        """Smoke mode: 30 s of follows through the API at most, the rest into Neo4j."""
        return min(self.follow_budget_s, 30.0) if self.smoke else self.follow_budget_s

    @property
    def home_rates(self) -> list[float]:
        if self.smoke:
            return [40, 80]
        return [50, 100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000]

    @property
    def mixed_rates(self) -> list[float]:
        if self.smoke:
            return [40, 80]
        return [20, 40, 60, 80, 100, 150, 200, 300, 400, 500, 600]

    @property
    def layer_rates(self) -> list[float]:
        if self.smoke:
            return [50, 100]
        return [100, 250, 500, 1000, 1500, 2000, 3000, 4000, 5000]

    @property
    def growth_sizes(self) -> list[int]:
        return [10, 100] if self.smoke else [10, 100, 1000, 10_000, 100_000]

    @property
    def follow_counts(self) -> list[int]:
        """Followees of the push-versus-pull readers (300: the target's reader)."""
        return [10, 30, 100, 300] if self.smoke else [10, 30, 100, 300, 1000, 3000]

    @property
    def sequential_reps(self) -> int:
        return 2 * MIN_P99_SAMPLES if not self.smoke else MIN_P99_SAMPLES

    @property
    def graph_nodes(self) -> int | None:
        return 60 if self.smoke else None

    @property
    def pull_size(self) -> tuple[int, int]:
        users = self.pull_users or (5_000 if self.smoke else 100_000)
        posts = self.pull_posts or (200_000 if self.smoke else 10_000_000)
        return users, posts


def _log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def lag_summary(lags: Sequence[Lag]) -> dict[str, Any]:
    """Fan-out lag of a set of posts, and each post's own delivery rate.

    A post's rate is its followers over its own lag (201 until its last follower's feed holds
    it): no span between posts, and none of the harness's checks, is counted in it.
    """
    seen = [lag.lag_s * 1000 for lag in lags if lag.lag_s is not None]
    per_post = [
        (lag.followers - lag.missing) / lag.lag_s
        for lag in lags
        if lag.lag_s is not None and lag.lag_s > 0 and lag.followers
    ]
    return {
        "posts": len(lags),
        "visible": len(seen),
        "never_visible": len(lags) - len(seen),
        "missing_deliveries": sum(lag.missing for lag in lags),
        "deliveries": sum(lag.followers - lag.missing for lag in lags),
        "deliveries_per_s_per_post": per_post,
        "deliveries_per_s_per_post_median": statistics.median(per_post) if per_post else None,
        "p50_ms": percentile(seen, 50),
        "p90_ms": percentile(seen, 90),
        "p99_ms": percentile(seen, 99),
        "p99_valid": len(seen) >= MIN_P99_SAMPLES,
        "max_ms": max(seen) if seen else None,
        "within_1s": sum(1 for x in seen if x <= 1000) / len(lags) if lags else None,
        "lags_ms": [round(x, 2) for x in seen],
    }


def _deliveries(lags: Sequence[Lag]) -> int:
    return sum(x.followers - x.missing for x in lags)


def _sent(outcome: tuple[list[float], int]) -> int:
    return len(outcome[0]) + outcome[1]


def _answered(result: LoadResult, kind: str | None = None) -> int:
    return sum(1 for o in result.outcomes if o.status > 0 and (kind is None or o.kind == kind))


def _result_json(result: LoadResult) -> dict[str, Any]:
    return {
        "rate": result.rate,
        "duration_s": result.duration_s,
        "elapsed_s": result.elapsed_s,
        "max_lateness_ms": result.max_lateness_s * 1000,
        "all": result.summary().as_dict(),
        "kinds": {k: result.summary(k).as_dict() for k in result.kinds()},
        "failures": result.statuses(),
        "answered": _answered(result),
    }


def _judge(result: LoadResult, kind: str) -> bool:
    """The target's measure: ``kind``'s p99 under 50 ms over >= 100 samples; no error at all."""
    return passes(result.summary(kind), p99_limit_ms=P99_LIMIT_MS) and (
        result.summary().errors == 0
    )


@dataclass
class Bench:
    config: RunConfig
    stack: BenchStack = field(default_factory=BenchStack)
    results: dict[str, Any] = field(default_factory=dict)
    accounts: list[Account] = field(default_factory=list)
    followers_of: dict[str, list[str]] = field(default_factory=dict)
    posts: list[tuple[str, str, datetime]] = field(default_factory=list)
    extra_roots: dict[str, int | None] = field(default_factory=dict)
    pull_server: PostgresServer | None = None
    pull_started: bool = False  # stopped at the end only when this run started it

    # ------------------------------------------------------------------ helpers
    def client(self, base_url: str | None = None) -> httpx.AsyncClient:
        assert self.stack.platform is not None
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        return httpx.AsyncClient(
            base_url=base_url or self.stack.platform.gateway_url, timeout=10.0, limits=limits
        )

    def feed_redis(self) -> Any:
        return aioredis.Redis.from_url(self.stack.redis_db_url(FEED_DB), decode_responses=True)

    async def idle(self, timeout_s: float = 120.0) -> None:
        if not await baselines.sleep_until_idle(self.stack.queue_depth, timeout_s):
            _log(f"queues not drained after {timeout_s:.0f}s; continuing")

    def _remember_post(self, body: dict[str, Any]) -> tuple[str, str]:
        created = datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
        self.posts.append((body["id"], body["author"]["id"], created))
        return body["id"], body["author"]["id"]

    def meter(self) -> CpuMeter:
        """Every process of the platform by group, and the harness (left out of totals)."""
        assert self.stack.platform is not None
        roots: dict[str, int | None] = {
            service: self.stack.platform.pid_of(service) for service in SERVICES
        }
        roots["nginx"] = self.stack.platform.pid_of("gateway")
        for name, server in self.stack.servers.items():
            roots[name] = server.pid()
        if self.pull_server is not None:
            roots["postgres_pull"] = self.pull_server.pid()
        roots.update(self.extra_roots)
        roots["harness"] = os.getpid()  # the run and its load-generator processes
        return CpuMeter(roots)

    async def measured(
        self, work: Awaitable[T], *, requests: Callable[[T], int]
    ) -> tuple[T, dict[str, Any], dict[str, Any]]:
        """Await ``work`` between CPU and Redis snapshots; (its result, cpu, redis)."""
        meter = self.meter()
        admin = aioredis.Redis.from_url(self.stack.redis_db_url(0), decode_responses=True)
        try:
            r0 = await baselines.redis_counters(admin)
            c0 = meter.start()
            value = await work
            cpu = meter.stop(c0)
            r1 = await baselines.redis_counters(admin)
        finally:
            await admin.aclose()
        n = requests(value)
        return value, cpu.as_dict(requests=n), baselines.redis_delta(r0, r1, per=n)

    # ------------------------------------------------------------------ phases
    async def load_graph(self, graph: Graph) -> None:
        async with self.client() as client:
            loader = ApiLoader(client, prefix="r98_")
            t0 = time.monotonic()
            by_index = await loader.register(range(graph.n))
            t1 = time.monotonic()
            _log(f"registered and logged in {graph.n} users in {t1 - t0:.1f}s")
            # Every follow through the API when it is fast enough (the default); otherwise a
            # sample through the API (its rate is reported) and the rest straight into Neo4j.
            rng = random.Random(self.config.seed)
            shuffled = list(graph.follows)
            rng.shuffle(shuffled)
            limit = self.config.api_follows
            wanted = shuffled if limit is None else shuffled[:limit]
            loader.follow_concurrency = self.config.follows_in_flight
            # In chunks, within a time budget: when the measured rate says the rest would not
            # fit, the rest goes straight into Neo4j (and the report says how many did).
            sample: list[tuple[int, int]] = []
            chunk = 200 if self.config.smoke else 2000
            for start in range(0, len(wanted), chunk):
                part = wanted[start : start + chunk]
                await loader.follow_all(Graph(graph.name, graph.n, part), by_index)
                sample += part
                spent = time.monotonic() - t1
                left = (len(wanted) - len(sample)) * spent / len(sample)
                _log(f"{len(sample)} follows through the API ({len(sample) / spent:.0f}/s)")
                if left and spent + left > self.config.follow_seconds:
                    _log(f"the other {len(wanted) - len(sample)} would take {left:.0f}s more")
                    break
            t2 = time.monotonic()
            _log(f"{len(sample)} follows through the API in {t2 - t1:.1f}s")
            await self.idle(600)
            t3 = time.monotonic()
            self.accounts = [by_index[i] for i in range(graph.n)]
            direct = shuffled[len(sample) :]
            if direct:
                ids = [(by_index[f].user_id, by_index[e].user_id) for f, e in shuffled]
                await load_follows_into_neo4j(self.stack.neo4j.bolt_uri, ids)
                redis = self.feed_redis()
                try:
                    await forget_follower_replicas(redis, [a.user_id for a in self.accounts])
                finally:
                    await redis.aclose()
            t3b = time.monotonic()
            if direct:
                _log(f"{len(direct)} more follows into Neo4j in {t3b - t3:.1f}s")
            await loader.read_feeds(self.accounts)
            await self.idle()
            t4 = time.monotonic()
            followers = graph.followers()
            self.followers_of = {
                a.user_id: [self.accounts[f].user_id for f in followers[a.index]]
                for a in self.accounts
            }
            self.results["load"] = {
                "register_login_s": t1 - t0,
                "registrations_per_s": graph.n / (t1 - t0),
                "api_follows": len(sample),
                "follow_concurrency": self.config.follows_in_flight,
                "follow_budget_s": self.config.follow_seconds,
                "follow_s": t2 - t1,
                "follows_per_s": len(sample) / (t2 - t1),
                "events_settled_s": t3 - t2,
                "direct_follows": len(direct),
                "direct_follows_s": t3b - t3,
                "warm_feeds_s": t4 - t3b,
            }
            # A post per user before measuring, so timelines and feeds have content.
            seeded: list[Account] = list(self.accounts)
            rng.shuffle(seeded)
            semaphore = asyncio.Semaphore(16)

            async def post(account: Account) -> None:
                async with semaphore:
                    response = await client.post(
                        "/api/v1/posts",
                        headers=account.auth,
                        json={"content": f"hello from {account.username} #bench"},
                    )
                    if response.status_code == 201:
                        self._remember_post(response.json())

            t5 = time.monotonic()
            await asyncio.gather(*(post(a) for a in seeded))
            await self.idle()
            self.results["load"]["seed_posts"] = len(self.posts)
            self.results["load"]["retried"] = dict(RETRIED)
            self.results["load"]["seed_posts_s"] = time.monotonic() - t5

    def _watching(self, watcher: VisibilityWatcher) -> Callable[[Call, Any, float], None]:
        def on_response(call: Call, body: Any, done: float) -> None:
            if call.kind == "new_post":
                post_id, author_id = self._remember_post(body)
                watcher.track(post_id, author_id, self.followers_of[author_id], done)

        return on_response

    def picker(self, mix: Mapping[str, float]) -> Callable[[random.Random], Call]:
        kinds = list(mix)
        weights = [mix[k] for k in kinds]
        accounts = self.accounts

        def pick(rng: random.Random) -> Call:
            kind = rng.choices(kinds, weights)[0]
            account = accounts[rng.randrange(len(accounts))]
            if kind == "home_feed":
                return Call(kind, "GET", "/api/v1/me/feed?limit=10", headers=account.auth)
            if kind == "user_timeline":
                other = accounts[rng.randrange(len(accounts))]
                return Call(kind, "GET", f"/api/v1/users/{other.user_id}/posts?limit=10")
            text = f"post {rng.getrandbits(48):x} from {account.username} #bench"
            return Call(
                kind,
                "POST",
                "/api/v1/posts",
                headers=account.auth,
                json={"content": text},
                expect=201,
                report=True,  # the fan-out watcher times the post from its 201
            )

        return pick

    async def _step(
        self,
        generator: LoadGenerator,
        pick: Callable[[random.Random], Call],
        rate: float,
        seed: int,
        *,
        judge_kind: str,
        per_kind: str,
    ) -> dict[str, Any]:
        redis = self.feed_redis()
        try:
            watcher = VisibilityWatcher(redis, batch=FANOUT_BATCH)

            async def work() -> LoadResult:
                return await generator.run(
                    pick,
                    rate=rate,
                    duration_s=self.config.step_s,
                    seed=seed,
                    on_response=self._watching(watcher),
                )

            # CPU and Redis are divided by the requests of `per_kind` the step answered.
            result, cpu, server = await self.measured(
                work(), requests=lambda r: _answered(r, None if per_kind == "all" else per_kind)
            )
            await watcher.wait()
        finally:
            await redis.aclose()
        entry = _result_json(result)
        entry["passed"] = _judge(result, judge_kind)
        entry["cpu"] = cpu
        entry["redis"] = server
        if watcher.lags:
            entry["fanout"] = lag_summary(watcher.lags)
        s = result.summary(judge_kind)
        per = cpu.get("cpu_ms_per_request", {})
        total = per.get("total", float("nan")) if isinstance(per, dict) else float("nan")
        _log(
            f"  {rate:>6.0f}/s: {judge_kind} achieved {s.achieved_rps:.1f}/s p50 {s.p50_ms:.1f} "
            f"p99 {s.p99_ms:.1f} ms (n={s.ok}) errors {result.summary().errors} "
            f"cpu {total:.2f} ms/req -> {'pass' if entry['passed'] else 'FAIL'}"
        )
        await self.idle()
        return entry

    async def ladder(
        self,
        name: str,
        base_url: str,
        pick: Callable[[random.Random], Call],
        rates: Sequence[float],
        *,
        judge_kind: str,
        per_kind: str = "all",
    ) -> dict[str, Any]:
        """Steps up the rates; the first failing step is rerun once, and if it fails again the
        ladder ends there (the monotone sustainable rate is decided)."""
        steps: list[dict[str, Any]] = []
        _log(f"{name} ladder, {self.config.step_s:.0f} s steps, judged by {judge_kind}")
        async with LoadGenerator(base_url, processes=self.config.generator_processes) as gen:
            for n, rate in enumerate(rates):
                kw = {"judge_kind": judge_kind, "per_kind": per_kind}
                entry = await self._step(gen, pick, rate, self.config.seed + n, **kw)
                if not entry["passed"] and self.config.confirm:
                    _log(f"  {rate:.0f}/s failed: confirming")
                    again = await self._step(gen, pick, rate, self.config.seed + 1000 + n, **kw)
                    entry = {**again, "first_attempt": entry, "confirmation": True}
                steps.append(entry)
                if not entry["passed"]:
                    break
        sustainable = None
        for entry in steps:
            if not entry["passed"]:
                break
            sustainable = entry["rate"]
        deciding = next((e for e in steps if not e["passed"]), None)
        at = next((e for e in steps if e["rate"] == sustainable), None)
        out = {
            "steps": steps,
            "sustainable_rps": sustainable,
            "deciding_step": None if deciding is None else deciding["rate"],
            "ended_by": "confirmed failure" if deciding is not None else "last rate passed",
            "judged_by": f"{judge_kind} p99 < {P99_LIMIT_MS:.0f} ms over >= "
            f"{MIN_P99_SAMPLES} samples, no errors",
            "step_s": self.config.step_s,
            # The efficiency figure: at the sustainable rate (the lowest step when none passed).
            "at_sustainable": at or (steps[0] if steps else None),
        }
        # The old (non-monotone) reading, for comparison with earlier runs' reports.
        out["highest_passing_rps"] = max((e["rate"] for e in steps if e["passed"]), default=None)
        return out

    async def home_and_mixed(self, which: str) -> None:
        assert self.stack.platform is not None
        url = self.stack.platform.gateway_url
        if which == "home":
            self.results["home_feed"] = await self.ladder(
                "home-feed",
                url,
                self.picker({"home_feed": 1.0}),
                self.config.home_rates,
                judge_kind="home_feed",
                per_kind="home_feed",
            )
        else:
            mix = {"home_feed": 0.6, "user_timeline": 0.3, "new_post": 0.1}
            self.results["mixed"] = {
                "mix": mix,
                **await self.ladder(
                    "mixed",
                    url,
                    self.picker(mix),
                    self.config.mixed_rates,
                    judge_kind="home_feed",
                ),
            }

    async def _restart_platform(self, env: Mapping[str, str]) -> None:
        assert self.stack.platform is not None
        platform = self.stack.platform
        for service in SERVICES:
            await asyncio.to_thread(platform.stop_service, service)
        platform.extra_env = dict(env)
        await asyncio.to_thread(platform.start, 180.0)

    async def log_level(self) -> None:
        """One home-feed step at INFO (production's level) beside the same step at WARNING."""
        assert self.stack.platform is not None
        home = self.results.get("home_feed", {})
        rate = home.get("sustainable_rps") or self.config.home_rates[0]
        quiet = platform_env(hybrid_threshold=HYBRID_OFF, fanout_batch=FANOUT_BATCH)
        loud = {**quiet, **{f"{s.upper()}_LOG_LEVEL": "INFO" for s in SERVICES}}
        pick = self.picker({"home_feed": 1.0})
        out: dict[str, Any] = {"rate": rate}
        try:
            for label, env in (("info", loud), ("warning", quiet)):
                await self._restart_platform(env)
                async with LoadGenerator(
                    self.stack.platform.gateway_url, processes=self.config.generator_processes
                ) as gen:
                    _log(f"log level {label}")
                    out[label] = await self._step(
                        gen,
                        pick,
                        rate,
                        self.config.seed + 7,
                        judge_kind="home_feed",
                        per_kind="home_feed",
                    )
        finally:
            if self.stack.platform.extra_env != quiet:
                await self._restart_platform(quiet)
        self.results["log_level"] = out

    async def fanout_growth(self) -> None:
        """Fan-out by follower count (synthetic followers in Redis), each post on its own."""
        sizes = self.config.growth_sizes
        synthetic = [f"syn{n:06d}" for n in range(max(sizes))]
        rows: list[dict[str, Any]] = []
        async with self.client() as client:
            authors = await ApiLoader(client, prefix="grow_").register(sizes)
            redis = self.feed_redis()
            try:
                for n in sizes:
                    await load_synthetic_followers(
                        redis, authors[n].user_id, synthetic[:n], idle_ttl_ms=IDLE_TTL_MS
                    )
                await self.idle()
                for n in sizes:
                    lags, cpu, server = await self.measured(
                        self._post_and_watch(client, redis, authors[n], synthetic[:n]),
                        requests=_deliveries,
                    )
                    row = {"followers": n, **lag_summary(lags), "cpu": cpu, "redis": server}
                    rows.append(row)
                    _log(
                        f"fan-out to {n}: lag p50 {row['p50_ms']:.1f} ms, per post "
                        f"{row['deliveries_per_s_per_post_median'] or 0:,.0f} deliveries/s, "
                        f"Redis {server.get('command_us_per', 0):.2f} us/delivery"
                    )
                    await self.idle()
            finally:
                await redis.aclose()
        raw = await asyncio.to_thread(
            baselines.raw_zadd_feed_shaped,
            self.stack.redis.port,
            RAW_DB,
            feeds=50 if self.config.smoke else 1000,
            cap=FEED_CAP,
            commands=50_000 if self.config.smoke else 500_000,
        )
        _log(
            f"raw ZADD on feed-shaped keys ({raw['encoding']}, {raw['member_bytes']} B members): "
            f"{raw['zadd_per_s']:,.0f}/s, with the trim {raw['zadd_trim_per_s']:,.0f}/s"
        )
        self.results["fanout"] = {"by_followers": rows, "raw_zadd": raw}

    async def _post_and_watch(
        self,
        client: httpx.AsyncClient,
        redis: Any,
        author: Account,
        followers: Sequence[str],
        *,
        posts: int = 3,
    ) -> list[Lag]:
        lags: list[Lag] = []
        for k in range(posts):
            # One post at a time, so each post's lag is its own fan-out alone.
            watcher = VisibilityWatcher(redis, batch=FANOUT_BATCH, timeout_s=120.0)
            response = await client.post(
                "/api/v1/posts", headers=author.auth, json={"content": f"growth post {k}"}
            )
            done = time.monotonic()
            if response.status_code != 201:
                raise RuntimeError(f"post failed: {response.status_code} {response.text[:200]}")
            post_id, author_id = self._remember_post(response.json())
            watcher.track(post_id, author_id, followers, done)
            await watcher.wait()
            lags += watcher.lags
        return lags

    async def memory(self) -> None:
        """MEMORY USAGE over ZCARD of every Reed98 reader's feed, as fan-out left them."""
        redis = self.feed_redis()
        try:
            total_bytes = total_entries = 0
            encodings: dict[str, int] = {}
            for account in self.accounts:
                key = keys.feed(account.user_id)
                entries = int(await redis.zcard(key))
                if not entries:
                    continue
                total_bytes += int(await redis.memory_usage(key, samples=0) or 0)
                total_entries += entries
                encoding = str(await redis.object("encoding", key))
                encodings[encoding] = encodings.get(encoding, 0) + 1
            sample: str | None = None
            for account in self.accounts:
                first = await redis.zrange(keys.feed(account.user_id), 0, 0)
                if first:
                    sample = str(first[0])
                    break
        finally:
            await redis.aclose()
        self.results["memory"] = {
            "feeds": sum(encodings.values()),
            "feed_entries": total_entries,
            "feed_bytes": total_bytes,
            "bytes_per_entry": total_bytes / total_entries if total_entries else None,
            "encodings": encodings,
            "member_bytes": len(sample) if sample else None,
        }
        _log(f"memory: {self.results['memory']}")

    # ------------------------------------------------------------- layers and pull
    def _layer_env(self, pull_dsn: str = "") -> dict[str, str]:
        assert self.stack.platform is not None
        auth = self.stack.platform.service_url("auth")
        return {
            "BENCH_APP_JWKS_URL": f"{auth}/.well-known/jwks.json",
            "BENCH_APP_REDIS_URL": self.stack.redis_db_url(FEED_DB),
            "BENCH_APP_PULL_DSN": pull_dsn,
            "BENCH_APP_LOG_LEVEL": "WARNING",
        }

    async def _layer_stack(
        self, pull_dsn: str = ""
    ) -> tuple[baselines.LayerServer, baselines.BenchGateway]:
        server = baselines.LayerServer(
            env=self._layer_env(pull_dsn), log=self.stack.root / "logs" / "bench-layer.log"
        )
        gateway = baselines.BenchGateway(self.stack.root, f"127.0.0.1:{server.port}")
        await asyncio.to_thread(gateway.start)
        self.extra_roots["bench_nginx"] = gateway.pid
        return server, gateway

    async def layers(self) -> None:
        """One ladder per layer behind the benchmark's gateway; the real home feed is the
        home-feed ladder's."""
        server, gateway = await self._layer_stack()
        accounts = self.accounts
        rows: dict[str, Any] = {}
        try:
            for layer in ("bare", "middleware", "jwt", "redis"):
                await asyncio.to_thread(server.start, layer)
                self.extra_roots["bench_app"] = server.pid

                def pick(rng: random.Random, layer: str = layer) -> Call:
                    account = accounts[rng.randrange(len(accounts))]
                    return Call(layer, "GET", "/api/v1/me/feed?limit=10", headers=account.auth)

                rows[layer] = await self.ladder(
                    f"layer {layer}", gateway.url, pick, self.config.layer_rates, judge_kind=layer
                )
                await asyncio.to_thread(server.stop)
        finally:
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(gateway.stop)
            self.extra_roots.pop("bench_app", None)
            self.extra_roots.pop("bench_nginx", None)
        self.results["layers"] = rows

    async def _prepare_push_reader(self, redis: Any, reader: Account, followees: int) -> None:
        """The reader's feed as fan-out would have left it (capped, the newest real posts),
        and its following set of ``followees`` accounts."""
        real = sorted(self.posts, key=lambda p: p[2], reverse=True)[:FEED_CAP]
        entries = {keys.entry(pid, aid): int(ts.timestamp() * 1000) for pid, aid, ts in real}
        others = [f"syn{i:06d}" for i in range(followees)]
        pipe = redis.pipeline(transaction=False)
        pipe.hset(keys.feed_meta(reader.user_id), mapping={"built_at": int(time.time() * 1000)})
        pipe.pexpire(keys.feed_meta(reader.user_id), IDLE_TTL_MS)
        for start in range(0, len(others), 5000):
            pipe.sadd(keys.following(reader.user_id), *others[start : start + 5000])
        if entries:
            pipe.zadd(keys.feed(reader.user_id), entries)
        await pipe.execute()

    async def push_vs_pull(self) -> None:
        users, posts = self.config.pull_size
        self.pull_server = open_pull_server()
        self.pull_started = await asyncio.to_thread(self.pull_server.start)
        data = PullDataset(self.pull_server.dsn("postgres"), users=users, posts=posts)
        out: dict[str, Any] = {"data_set": {"template": data.template}}
        out["data_set"]["generation_s"] = await data.ensure(_log)
        out["data_set"]["clone_s"] = await data.clone("pull_run")
        out["data_set"].update(await data.sizes("pull_run"))
        counts = self.config.follow_counts
        reps = self.config.sequential_reps
        rows: list[dict[str, Any]] = []
        async with self.client() as client:
            readers = await ApiLoader(client, prefix="pull_").register(counts)
            redis = self.feed_redis()
            try:
                for n in counts:
                    await self._prepare_push_reader(redis, readers[n], n)
                    await data.add_reader("pull_run", readers[n].user_id, n, seed=n)
            finally:
                await redis.aclose()
            server, gateway = await self._layer_stack(data.dsn("pull_run"))
            try:
                await asyncio.to_thread(server.start, "pull")
                self.extra_roots["bench_app"] = server.pid
                async with self.client(gateway.url) as pull_client:
                    for n in counts:
                        reader = readers[n]
                        calls = [
                            Call("feed", "GET", "/api/v1/me/feed?limit=10", headers=reader.auth)
                        ] * reps
                        push, push_cpu, _ = await self.measured(
                            sequential_latencies(client, calls), requests=_sent
                        )
                        pull, pull_cpu, _ = await self.measured(
                            sequential_latencies(pull_client, calls), requests=_sent
                        )
                        sql = await sql_latencies(
                            data.dsn("pull_run"), PULL_QUERY, [reader.user_id, 10], reps
                        )
                        row: dict[str, Any] = {
                            "followees": n,
                            "push": {**baselines.summarize_ms(push[0]), "errors": push[1]},
                            "pull": {**baselines.summarize_ms(pull[0]), "errors": pull[1]},
                            "pull_sql_only": baselines.summarize_ms(sql),
                            "push_cpu": push_cpu,
                            "pull_cpu": pull_cpu,
                        }
                        rows.append(row)
                        _log(
                            f"{n} followees: push p99 {row['push']['p99_ms']:.1f} ms, pull p99 "
                            f"{row['pull']['p99_ms']:.1f} ms (SQL alone "
                            f"{row['pull_sql_only']['p99_ms']:.1f} ms)"
                        )
            finally:
                await asyncio.to_thread(server.stop)
                await asyncio.to_thread(gateway.stop)
                self.extra_roots.pop("bench_app", None)
                self.extra_roots.pop("bench_nginx", None)
        out["by_followees"] = rows
        out["crossover"] = crossover(rows)
        self.results["push_vs_pull"] = out

    async def _phase(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run one phase; a failure is recorded and the later phases still run."""
        if name not in self.config.phases:
            work.close()  # a phase left out is never started
            return
        t0 = time.monotonic()
        try:
            await work
        except Exception as exc:
            _log(f"phase {name} failed: {exc!r}")
            self.results.setdefault("errors", {})[name] = repr(exc)
            await self.idle()
        self.results.setdefault("meta", {}).setdefault("phase_s", {})[name] = time.monotonic() - t0
        # What is measured so far survives an interrupted run.
        self.config.out.parent.mkdir(parents=True, exist_ok=True)
        partial = self.config.out.with_suffix(".partial.json")
        partial.write_text(json.dumps(self.results, indent=1, default=str))

    async def execute(self) -> dict[str, Any]:
        started = time.monotonic()
        graph = load_edges(limit_nodes=self.config.graph_nodes)
        self.results["meta"] = {
            "started_at": datetime.now(UTC).isoformat(),
            "smoke": self.config.smoke,
            "phases": list(self.config.phases),
            "step_s": self.config.step_s,
            "short_steps": self.config.step_s < 30,
            "loadavg_start": list(os.getloadavg()),
            "machine": machine(),
            "python": pyplatform.python_version(),
            "packages": {
                p: _version(p)
                for p in ("fastapi", "uvicorn", "redis", "hiredis", "orjson", "asyncpg", "uvloop")
            },
            "settings": platform_env(hybrid_threshold=HYBRID_OFF, fanout_batch=FANOUT_BATCH),
        }
        if self.config.smoke:
            _log(
                f"SMOKE MODE: {self.config.step_s:.0f} s steps (the targets' measure needs "
                "at least 30 s), a 60-user graph and a small pull data set; not figures to quote"
            )
        self.results["graph"] = graph.describe()
        _log(f"starting backing servers in {self.stack.root}")
        await asyncio.to_thread(self.stack.start_backing)
        env = platform_env(hybrid_threshold=HYBRID_OFF, fanout_batch=FANOUT_BATCH)
        await asyncio.to_thread(self.stack.start_platform, env)
        self.results["meta"]["versions"] = await asyncio.to_thread(self.stack.versions)
        _log("platform up; loading the graph through the API")
        await self.load_graph(graph)
        await self._phase("home", self.home_and_mixed("home"))
        await self._phase("mixed", self.home_and_mixed("mixed"))
        await self._phase("loglevel", self.log_level())
        await self._phase("fanout", self.fanout_growth())
        await self._phase("memory", self.memory())
        await self._phase("layers", self.layers())
        await self._phase("pull", self.push_vs_pull())
        # Events that ended in a dead-letter queue during the run (a failure of the platform).
        self.results["dead_letters"] = {
            k: v
            for k, v in (await asyncio.to_thread(self.stack.queues)).items()
            if k.endswith(".dead") and v
        }
        self.results["targets"] = targets(self.results)
        self.results["meta"]["duration_s"] = time.monotonic() - started
        self.results["meta"]["loadavg_end"] = list(os.getloadavg())
        return self.results

    def stop(self, *, keep: bool) -> None:
        self.stack.stop(keep=keep)
        if self.pull_server is not None and self.pull_started:
            self.pull_server.stop()  # its data (the template) stays cached


def open_pull_server() -> PostgresServer:
    """The pull data set's own PostgreSQL, its data kept in the cache between runs; when it is
    already running (``bench pull-data`` generating), the same server on its port."""
    server = PostgresServer(CACHE / "pull-postgres", free_port(), CACHE / "logs")
    if server.pid() is not None:
        # postmaster.pid: pid, data directory, start time, port, ...
        with contextlib.suppress(OSError, IndexError, ValueError):
            server.port = int((server.data_dir / "postmaster.pid").read_text().splitlines()[3])
    return server


async def prepare_pull_data(users: int, posts: int) -> dict[str, float]:
    server = open_pull_server()
    started = await asyncio.to_thread(server.start)
    try:
        return await PullDataset(server.dsn("postgres"), users=users, posts=posts).ensure(_log)
    finally:
        if started:
            await asyncio.to_thread(server.stop)


def crossover(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Where fan-out on read stops being at least as fast as the home feed (p99)."""
    faster = [r["followees"] for r in rows if r["pull"]["p99_ms"] <= r["push"]["p99_ms"]]
    slower = [r["followees"] for r in rows if r["pull"]["p99_ms"] > r["push"]["p99_ms"]]
    if not slower:
        return {"pull_slower_from": None, "note": "pull as fast as push at every count measured"}
    if not faster:
        return {"pull_slower_from": min(slower), "note": "push faster at every count measured"}
    return {
        "pull_slower_from": min(slower),
        "pull_as_fast_up_to": max(f for f in faster if f < min(slower))
        if any(f < min(slower) for f in faster)
        else None,
    }


def _dig(d: Any, *path: Any) -> Any:
    for key in path:
        if d is None:
            return None
        d = d.get(key) if isinstance(d, dict) else None
    return d


def targets(results: Mapping[str, Any]) -> dict[str, float | None]:
    """The target figures of issue 14, as plain numbers (None: not measured in this run)."""
    home = results.get("home_feed") or {}
    mixed = results.get("mixed") or {}
    fan = results.get("fanout") or {}
    biggest = max(fan.get("by_followers", []), key=lambda r: r["followers"], default=None)
    per_post = _dig(biggest, "deliveries_per_s_per_post_median")
    raw = _dig(fan, "raw_zadd", "zadd_per_s")
    at_300 = next(
        (r for r in _dig(results, "push_vs_pull", "by_followees") or [] if r["followees"] == 300),
        None,
    )
    ratio = None
    if at_300 and at_300["push"]["p99_ms"]:
        ratio = at_300["pull"]["p99_ms"] / at_300["push"]["p99_ms"]
    return {
        "home_feed_sustainable_rps": home.get("sustainable_rps"),
        "cpu_ms_per_home_feed_read": _dig(
            home, "at_sustainable", "cpu", "cpu_ms_per_request", "total"
        ),
        "mixed_sustainable_rps": mixed.get("sustainable_rps"),
        "fanout_vs_raw_zadd": per_post / raw if per_post and raw else None,
        "fanout_visible_p99_ms": _dig(mixed, "at_sustainable", "fanout", "p99_ms"),
        "push_vs_pull_p99_ratio_300": ratio,
        "redis_bytes_per_feed_entry": _dig(results, "memory", "bytes_per_entry"),
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def run(config: RunConfig, *, keep: bool = False) -> Path:
    bench = Bench(config)
    try:
        results = asyncio.run(bench.execute())
    finally:
        _log("stopping the platform and backing servers")
        bench.stop(keep=keep)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(results, indent=1, default=str))
    config.out.with_suffix(".partial.json").unlink(missing_ok=True)
    target_file = config.out.with_name("targets.json")
    target_file.write_text(json.dumps(results["targets"], indent=1) + "\n")
    _log(f"results written to {config.out}, targets to {target_file}")
    _log(f"targets: {json.dumps(results['targets'])}")
    return config.out
