"""``python -m bench run``: one whole benchmark run on a private platform; results as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import platform as pyplatform
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bench import baselines
from bench.backing import BenchStack, machine, platform_env
from bench.fanout import Lag, VisibilityWatcher
from bench.graph import Graph, load_edges
from bench.loader import (
    Account,
    ApiLoader,
    forget_follower_replicas,
    load_follows_into_neo4j,
    load_synthetic_followers,
)
from bench.loadgen import Call, LoadGenerator, LoadResult, sequential_latencies
from bench.stats import Summary, percentile, sustainable_rate
from feed_service.repository import keys

__all__ = ["RunConfig", "run"]

FEED_DB = 3  # deploy.platform gives feed_service Redis database 3
RAW_DB = 15  # the raw-limit baseline's own database on the same server
IDLE_TTL_MS = 30 * 86_400_000
FANOUT_BATCH = 1000
HYBRID_OFF = 1_000_000_000
HYBRID_ON = 10_000  # feed_service's default threshold


@dataclass(frozen=True)
class RunConfig:
    quick: bool = False
    profile: bool = False
    out: Path = Path("bench/results/latest.json")
    seed: int = 42
    # Processes sending the open-loop load (each a share of the Poisson rate); the run's own
    # process keeps the fan-out watcher and the bookkeeping.
    generator_processes: int = 2
    # Follows made through the public API; None: every edge of the graph.
    api_follows: int | None = None
    follow_concurrency: int = 48
    follow_budget_s: float = 300.0
    profile_rate: float = 40.0  # the mixed step sampled by py-spy (an extra step)

    @property
    def step_s(self) -> float:
        return 2.0 if self.quick else 10.0

    @property
    def mixed_rates(self) -> list[float]:
        return [5, 10] if self.quick else [20, 40, 60, 80, 100, 120, 160, 200, 240]

    @property
    def write_rates(self) -> list[float]:
        return [5, 10] if self.quick else [5, 10, 20, 40, 60, 80, 120]

    @property
    def bare_rates(self) -> list[float]:
        if self.quick:
            return [50, 100]
        return [250, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000]

    @property
    def growth_sizes(self) -> list[int]:
        return [10, 100] if self.quick else [10, 100, 1000, 10_000, 100_000]

    @property
    def graph_nodes(self) -> int | None:
        return 60 if self.quick else None


def _log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def lag_summary(lags: Sequence[Lag]) -> dict[str, Any]:
    seen = [lag.lag_s * 1000 for lag in lags if lag.lag_s is not None]
    delivered = sum(lag.followers - lag.missing for lag in lags)
    span = None
    done = [lag for lag in lags if lag.visible_at is not None]
    if done:
        span = max(x.visible_at for x in done if x.visible_at) - min(x.created_at for x in done)
    return {
        "posts": len(lags),
        "visible": len(seen),
        "never_visible": len(lags) - len(seen),
        "missing_deliveries": sum(lag.missing for lag in lags),
        "deliveries": delivered,
        "deliveries_per_s": delivered / span if span else None,
        "p50_ms": percentile(seen, 50),
        "p90_ms": percentile(seen, 90),
        "p99_ms": percentile(seen, 99),
        "max_ms": max(seen) if seen else None,
        "within_1s": sum(1 for x in seen if x <= 1000) / len(lags) if lags else None,
        "lags_ms": [round(x, 2) for x in seen],
    }


def _result_json(result: LoadResult) -> dict[str, Any]:
    return {
        "rate": result.rate,
        "duration_s": result.duration_s,
        "elapsed_s": result.elapsed_s,
        "max_lateness_ms": result.max_lateness_s * 1000,
        "all": result.summary().as_dict(),
        "kinds": {k: result.summary(k).as_dict() for k in result.kinds()},
        "failures": result.statuses(),
    }


@dataclass
class Bench:
    config: RunConfig
    stack: BenchStack = field(default_factory=BenchStack)
    results: dict[str, Any] = field(default_factory=dict)
    accounts: list[Account] = field(default_factory=list)
    followers_of: dict[str, list[str]] = field(default_factory=dict)
    posts: list[tuple[str, str, datetime]] = field(default_factory=list)

    # ------------------------------------------------------------------ helpers
    def client(self) -> httpx.AsyncClient:
        assert self.stack.platform is not None
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        return httpx.AsyncClient(
            base_url=self.stack.platform.gateway_url, timeout=10.0, limits=limits
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
            loader.follow_concurrency = self.config.follow_concurrency
            # In chunks, within a time budget: when the measured rate says the rest would not
            # fit, the rest goes straight into Neo4j (and the report says how many did).
            sample: list[tuple[int, int]] = []
            chunk = 2000
            for start in range(0, len(wanted), chunk):
                part = wanted[start : start + chunk]
                await loader.follow_all(Graph(graph.name, graph.n, part), by_index)
                sample += part
                spent = time.monotonic() - t1
                left = (len(wanted) - len(sample)) * spent / len(sample)
                _log(f"{len(sample)} follows through the API ({len(sample) / spent:.0f}/s)")
                if left and spent + left > self.config.follow_budget_s:
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
                "follow_concurrency": self.config.follow_concurrency,
                "follow_budget_s": self.config.follow_budget_s,
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
            self.results["load"]["seed_posts_s"] = time.monotonic() - t5

    def _start_profilers(self, seconds: float) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
        """py-spy (sampling, 100 Hz) on each service process for one ladder step."""
        assert self.stack.platform is not None
        out: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        for service in ("feed", "post", "auth", "network"):
            pid = self.stack.platform.pid_of(service)
            if pid is None or shutil.which("py-spy") is None:
                continue
            path = self.stack.root / f"profile-{service}.txt"
            proc = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--format",
                    "raw",
                    "--rate",
                    "100",
                    "--nonblocking",
                    "--duration",
                    str(int(seconds)),
                    "--pid",
                    str(pid),
                    "--output",
                    str(path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            out[service] = (proc, path)
        return out

    def _watching(self, watcher: VisibilityWatcher) -> Callable[[Call, Any, float], None]:
        def on_response(call: Call, body: Any, done: float) -> None:
            if call.kind == "new_post":
                post_id, author_id = self._remember_post(body)
                watcher.track(post_id, author_id, self.followers_of[author_id], done)

        return on_response

    def picker(self, mix: dict[str, float]) -> Callable[[random.Random], Call]:
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

    async def ladder(self, name: str, mix: dict[str, float], rates: Sequence[float]) -> None:
        steps: list[dict[str, Any]] = []
        redis = self.feed_redis()
        try:
            assert self.stack.platform is not None
            async with LoadGenerator(
                self.stack.platform.gateway_url, processes=self.config.generator_processes
            ) as generator:
                strikes = 0
                for step, rate in enumerate(rates):
                    watcher = VisibilityWatcher(redis, batch=FANOUT_BATCH)
                    result = await generator.run(
                        self.picker(mix),
                        rate=rate,
                        duration_s=self.config.step_s,
                        seed=self.config.seed + step,
                        on_response=self._watching(watcher),
                    )
                    await watcher.wait()
                    entry = _result_json(result)
                    if watcher.lags:
                        entry["fanout"] = lag_summary(watcher.lags)
                    steps.append(entry)
                    s = result.summary()
                    _log(
                        f"{name} {rate:>5.0f}/s: achieved {s.achieved_rps:.1f}/s "
                        f"p50 {s.p50_ms:.1f} p99 {s.p99_ms:.1f} ms errors {s.errors}"
                    )
                    await self.idle()
                    # Past the knee after two overloaded steps in a row (or one with a fifth
                    # of the requests failing): one neighbour's burst on the shared machine
                    # must not end the ladder at its first step.
                    overloaded = s.p99_ms > 2000 or s.error_rate > 0.05
                    strikes = strikes + 1 if overloaded else 0
                    if strikes >= 2 or s.error_rate > 0.2:
                        break
                if self.config.profile and name == "mixed":
                    await self._profiled_step(generator, mix)
        finally:
            await redis.aclose()
        kinds = {k for st in steps for k in st["kinds"]}
        sustainable = {
            k: sustainable_rate([_summary_from(st["kinds"][k]) for st in steps if k in st["kinds"]])
            for k in kinds
        }
        sustainable["all"] = sustainable_rate([_summary_from(st["all"]) for st in steps])
        self.results.setdefault("workloads", {})[name] = {
            "mix": mix,
            "steps": steps,
            "sustainable_rps": sustainable,
        }

    async def _profiled_step(self, generator: LoadGenerator, mix: dict[str, float]) -> None:
        """One extra step under py-spy, outside the ladder: sampling four processes at 100 Hz
        costs CPU on two cores, so a profiled step's latencies are not ladder figures."""
        rate = self.config.profile_rate
        profilers = self._start_profilers(self.config.step_s)
        result = await generator.run(
            self.picker(mix), rate=rate, duration_s=self.config.step_s, seed=self.config.seed
        )
        s = result.summary()
        self.results["profiles"] = {
            "workload": "mixed",
            "rate": rate,
            "step_under_profiler": s.as_dict(),
            **await asyncio.to_thread(_collect_profiles, profilers),
        }
        _log(f"profiled mixed step {rate:.0f}/s: p50 {s.p50_ms:.1f} p99 {s.p99_ms:.1f} ms")
        await self.idle()

    async def growth(self) -> None:
        """Fan-out cost by follower count (hybrid off), then the hybrid path for the largest."""
        sizes = self.config.growth_sizes
        biggest = max(sizes)
        synthetic = [f"syn{n:06d}" for n in range(biggest)]
        async with self.client() as client:
            loader = ApiLoader(client, prefix="grow_")
            authors = await loader.register(sizes)
            reader_accounts = await loader.register([1_000_000 + n for n in sizes])
            readers = {n: reader_accounts[1_000_000 + n] for n in sizes}
            witness = (await loader.register([2_000_000]))[2_000_000]
            redis = self.feed_redis()
            try:
                t0 = time.monotonic()
                for n in sizes:
                    await load_synthetic_followers(
                        redis, authors[n].user_id, synthetic[:n], idle_ttl_ms=IDLE_TTL_MS
                    )
                _log(f"synthetic followers loaded into Redis in {time.monotonic() - t0:.1f}s")
                rows: list[dict[str, Any]] = []
                for n in sizes:
                    lags = await self._post_and_watch(client, redis, authors[n], synthetic[:n])
                    rows.append({"followers": n, **lag_summary(lags)})
                    _log(f"fan-out to {n}: p50 {rows[-1]['p50_ms']} ms")
                    await self.idle()
                self.results.setdefault("growth", {})["fanout"] = rows
                self.results["growth"]["reads"] = await self._read_growth(client, redis, readers)
                self.results["growth"]["memory"] = await self._memory(redis)

                # The hybrid path: the same largest author with feed_service's default
                # threshold; a real follower (built feed) checks it through the API.
                await loader.read_feeds([witness])
                await loader.follow(witness, authors[biggest].user_id)
                await self.idle()
                big: dict[str, Any] = {"followers": biggest, "hybrid_off": rows[-1]}
                env = platform_env(hybrid_threshold=HYBRID_ON, fanout_batch=FANOUT_BATCH)
                await asyncio.to_thread(self.stack.restart_service, "feed", env)
                lags = await self._post_and_watch(
                    client, redis, authors[biggest], synthetic, hybrid=True, witness=witness
                )
                big["hybrid_on"] = {
                    **lag_summary(lags),
                    "witness_api_ms": self.results.pop("_witness", []),
                }
                self.results["fanout_big"] = big
            finally:
                await redis.aclose()

    async def _post_and_watch(
        self,
        client: httpx.AsyncClient,
        redis: Any,
        author: Account,
        followers: Sequence[str],
        *,
        hybrid: bool = False,
        witness: Account | None = None,
        posts: int = 3,
    ) -> list[Lag]:
        watcher = VisibilityWatcher(redis, batch=FANOUT_BATCH, timeout_s=120.0)
        witness_ms: list[float] = []
        for k in range(posts):
            response = await client.post(
                "/api/v1/posts", headers=author.auth, json={"content": f"growth post {k}"}
            )
            done = time.monotonic()
            if response.status_code != 201:
                raise RuntimeError(f"post failed: {response.status_code} {response.text[:200]}")
            post_id, author_id = self._remember_post(response.json())
            watcher.track(post_id, author_id, followers, done, hybrid=hybrid)
            if witness is not None:
                witness_ms.append(await self._witness(client, witness, post_id, done))
            await watcher.wait()
        if witness is not None:
            self.results["_witness"] = witness_ms
        return watcher.lags

    async def _witness(
        self, client: httpx.AsyncClient, witness: Account, post_id: str, since: float
    ) -> float:
        """Poll a real follower's home feed through the API until the post is in it."""
        deadline = since + 30
        while time.monotonic() < deadline:
            response = await client.get("/api/v1/me/feed?limit=10", headers=witness.auth)
            if response.status_code == 200 and any(
                item["id"] == post_id for item in response.json()["items"]
            ):
                return (time.monotonic() - since) * 1000
            await asyncio.sleep(0.01)
        return float("nan")

    async def _read_growth(
        self, client: httpx.AsyncClient, redis: Any, readers: dict[int, Account]
    ) -> list[dict[str, Any]]:
        """Home-feed read latency for readers following N accounts, against fan-out on read.

        Each reader's feed is prepared in Redis as fan-out would have left it (capped, the
        newest real posts) and its following set holds N accounts; the same reader in the
        PostgreSQL baseline follows the same N accounts, each with 3 posts.
        """
        real = sorted(self.posts, key=lambda p: p[2], reverse=True)
        rows: list[dict[str, Any]] = []
        follows: list[tuple[str, str]] = []
        for n, reader in readers.items():
            followees = [f"syn{i:06d}" for i in range(n)]
            follows += [(reader.user_id, f) for f in followees]
            entries = {
                keys.entry(pid, aid): int(ts.timestamp() * 1000)
                for pid, aid, ts in real[: min(800, 3 * n)]
            }
            pipe = redis.pipeline(transaction=False)
            pipe.hset(keys.feed_meta(reader.user_id), mapping={"built_at": int(time.time() * 1000)})
            pipe.pexpire(keys.feed_meta(reader.user_id), IDLE_TTL_MS)
            for start in range(0, n, 5000):
                pipe.sadd(keys.following(reader.user_id), *followees[start : start + 5000])
            if entries:
                pipe.zadd(keys.feed(reader.user_id), entries)
            await pipe.execute()
        # The Reed98 graph too: the 300-followee comparison uses its best-connected reader.
        follows += [(f, followee) for followee, fs in self.followers_of.items() for f in fs]
        largest = max(self.config.growth_sizes)
        syn_authors = [f"syn{i:06d}" for i in range(largest)]
        fan_read = baselines.FanoutOnRead(self.stack.postgres.dsn("bench_fanout_read"))
        self.stack.postgres.create_database("bench_fanout_read")
        await fan_read.load(follows, [*self.posts, *baselines.synthetic_posts(syn_authors, 3)])
        reps = 30 if self.config.quick else 200
        for n, reader in readers.items():
            calls = [
                Call("home_feed", "GET", "/api/v1/me/feed?limit=10", headers=reader.auth)
            ] * reps
            api, errors = await sequential_latencies(client, calls)
            pg = await fan_read.latencies(reader.user_id, reps if n < 100_000 else reps // 4)
            rows.append(
                {
                    "followees": n,
                    "feed_entries": int(await redis.zcard(keys.feed(reader.user_id))),
                    "api": baselines.summarize_ms(api),
                    "api_errors": errors,
                    "fanout_on_read_pg": baselines.summarize_ms(pg),
                }
            )
            row = rows[-1]
            _log(
                f"read growth {n}: api p99 {row['api']['p99_ms']:.1f} ms, "
                f"fan-out on read p99 {row['fanout_on_read_pg']['p99_ms']:.1f} ms"
            )
        # The best-connected Reed98 user (about 300 followees): the 10x target.
        top = max(self.accounts, key=lambda a: len(self.followers_of[a.user_id]))
        calls = [Call("home_feed", "GET", "/api/v1/me/feed?limit=10", headers=top.auth)] * reps
        api, _errors = await sequential_latencies(client, calls)
        pg = await fan_read.latencies(top.user_id, reps)
        zrev = await _redis_read_latencies(redis, keys.feed(top.user_id), reps)
        self.results["fanout_on_read"] = {
            "reader_followees": len(self.followers_of[top.user_id]),
            "api_home_feed": baselines.summarize_ms(api),
            "pg_join": baselines.summarize_ms(pg),
            "redis_zrevrange": baselines.summarize_ms(zrev),
        }
        return rows

    async def _memory(self, redis: Any) -> dict[str, Any]:
        total_bytes = 0
        total_entries = 0
        for account in self.accounts:
            key = keys.feed(account.user_id)
            usage = await redis.memory_usage(key, samples=0)
            if usage:
                total_bytes += int(usage)
                total_entries += int(await redis.zcard(key))
        # A full feed (800 entries): Redis stores sets over 128 entries as a skiplist.
        big_key = keys.feed("bench-memory-probe")
        real = self.posts[:800]
        await redis.zadd(big_key, {keys.entry(p, a): int(t.timestamp() * 1000) for p, a, t in real})
        big_usage = int(await redis.memory_usage(big_key, samples=0) or 0)
        big_entries = int(await redis.zcard(big_key))
        await redis.delete(big_key)
        return {
            "reed98_feeds_bytes": total_bytes,
            "reed98_feed_entries": total_entries,
            "bytes_per_entry_small_feeds": total_bytes / total_entries if total_entries else None,
            "full_feed_entries": big_entries,
            "bytes_per_entry_full_feed": big_usage / big_entries if big_entries else None,
        }

    async def baselines(self) -> None:
        raw_url = self.stack.redis_db_url(RAW_DB)
        self.results.setdefault("baselines", {})["redis_python"] = await baselines.redis_pipelined(
            raw_url, ops=20_000 if self.config.quick else 200_000
        )
        self.results["baselines"]["redis_benchmark"] = await asyncio.to_thread(
            baselines.redis_benchmark_tool,
            self.stack.redis.port,
            RAW_DB,
            requests=50_000 if self.config.quick else 1_000_000,
        )
        bare = baselines.BareServer()
        await asyncio.to_thread(bare.start)
        try:
            seconds = 2 if self.config.quick else 10
            wrk = await asyncio.to_thread(bare.wrk, seconds=seconds)
            _log(f"bare FastAPI under wrk (closed loop): {wrk.get('requests_per_s')} req/s")
            ladder = await bare.ladder(
                self.config.bare_rates,
                self.config.step_s,
                processes=self.config.generator_processes,
            )
        finally:
            bare.stop()
        steps = [_result_json(r) for r in ladder]
        for r in ladder:
            s = r.summary()
            _log(f"bare {r.rate:>6.0f}/s: achieved {s.achieved_rps:.0f}/s p99 {s.p99_ms:.1f} ms")
        self.results["baselines"]["bare_fastapi"] = {
            "steps": steps,
            "sustainable_rps": sustainable_rate([r.summary() for r in ladder]),
            "max_achieved_rps": max(r.summary().achieved_rps for r in ladder),
            "generator": {
                "library": "aiohttp + uvloop",
                "processes": self.config.generator_processes,
            },
            "wrk": wrk,
        }

    async def _phase(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run one phase; a failure is recorded and the later phases still run."""
        try:
            await work
        except Exception as exc:
            _log(f"phase {name} failed: {exc!r}")
            self.results.setdefault("errors", {})[name] = repr(exc)
            await self.idle()

    async def execute(self) -> dict[str, Any]:
        started = time.monotonic()
        graph = load_edges(limit_nodes=self.config.graph_nodes)
        self.results["meta"] = {
            "started_at": datetime.now(UTC).isoformat(),
            "quick": self.config.quick,
            # Other processes on the machine (other test runs) show up here.
            "loadavg_start": list(os.getloadavg()),
            "machine": machine(),
            "python": pyplatform.python_version(),
            "packages": {
                p: _version(p)
                for p in (
                    "fastapi",
                    "uvicorn",
                    "httpx",
                    "redis",
                    "asyncpg",
                    "neo4j",
                    "aio-pika",
                    "uvloop",
                )
            },
            "settings": {
                **platform_env(hybrid_threshold=HYBRID_OFF, fanout_batch=FANOUT_BATCH),
                "step_s": self.config.step_s,
            },
        }
        self.results["graph"] = graph.describe()
        _log(f"starting backing servers in {self.stack.root}")
        await asyncio.to_thread(self.stack.start_backing)
        env = platform_env(hybrid_threshold=HYBRID_OFF, fanout_batch=FANOUT_BATCH)
        await asyncio.to_thread(self.stack.start_platform, env)
        self.results["meta"]["versions"] = await asyncio.to_thread(self.stack.versions)
        _log("platform up; loading the graph through the API")
        await self.load_graph(graph)
        mixed = {"home_feed": 0.6, "user_timeline": 0.3, "new_post": 0.1}
        reads = {"home_feed": 0.67, "user_timeline": 0.33}
        await self._phase("mixed", self.ladder("mixed", mixed, self.config.mixed_rates))
        await self._phase("read", self.ladder("read", reads, self.config.mixed_rates))
        await self._phase("write", self.ladder("write", {"new_post": 1.0}, self.config.write_rates))
        await self._phase("growth", self.growth())
        await self._phase("baselines", self.baselines())
        self.results["meta"]["duration_s"] = time.monotonic() - started
        self.results["meta"]["loadavg_end"] = list(os.getloadavg())
        return self.results


def _summary_from(d: dict[str, Any]) -> Summary:
    return Summary(**{k: d[k] for k in Summary.__dataclass_fields__})


def _collect_profiles(
    profilers: dict[str, tuple[subprocess.Popen[bytes], Path]], top: int = 15
) -> dict[str, Any]:
    """Top frames by inclusive share of samples, from py-spy's collapsed stacks."""
    result: dict[str, Any] = {}
    for service, (proc, path) in profilers.items():
        proc.wait(timeout=120)
        if not path.exists():
            continue
        inclusive: dict[str, int] = {}
        total = 0
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            for frame in set(stack.split(";")):
                inclusive[frame] = inclusive.get(frame, 0) + count
        ranked = sorted(inclusive.items(), key=lambda kv: kv[1], reverse=True)
        own = ("auth_service/", "post_service/", "network_service/", "feed_service/", "common/")
        interesting = [
            (frame, n)
            for frame, n in ranked
            if frame.rpartition("(")[2].startswith(own) and "__main__" not in frame
        ]
        result[service] = {
            "samples": total,
            "top_own_code": [{"frame": frame, "share": n / total} for frame, n in interesting[:top]]
            if total
            else [],
            "top_all": [{"frame": f, "share": n / total} for f, n in ranked[:top]] if total else [],
        }
    return result


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


async def _redis_read_latencies(redis: Any, key: str, reps: int) -> list[float]:
    out: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        await redis.zrevrange(key, 0, 9, withscores=True)
        out.append(time.perf_counter() - t0)
    return out


def run(config: RunConfig, *, keep: bool = False) -> Path:
    bench = Bench(config)
    try:
        results = asyncio.run(bench.execute())
    finally:
        _log("stopping the platform and backing servers")
        bench.stack.stop(keep=keep)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(results, indent=1, default=str))
    _log(f"results written to {config.out}")
    return config.out
