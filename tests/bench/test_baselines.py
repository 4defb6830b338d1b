"""The raw ZADD baseline on feed-shaped keys and the Redis counters, against a real Redis;
the target figures and the crossover from a run's results (pure logic)."""

from __future__ import annotations

import redis.asyncio as aioredis

from bench.baselines import raw_zadd_feed_shaped, redis_counters, redis_delta
from bench.runner import crossover, targets
from deploy.local import RedisServer

DB = 13  # a database no other test of the suite uses: the baseline empties it


def test_raw_zadd_uses_feed_shaped_skiplists_at_the_cap(redis_server: RedisServer) -> None:
    raw = raw_zadd_feed_shaped(redis_server.port, DB, feeds=5, cap=300, commands=2_000)
    # feed_service's members (post id:author id, two UUIDs) are longer than
    # zset-max-listpack-value (64), so a real feed is a skiplist: so are these keys.
    assert raw["member_bytes"] == 73
    assert raw["encoding"] == "skiplist"
    assert raw["zadd_per_s"] > 0 and raw["zadd_trim_per_s"] > 0 and raw["zrevrange10_per_s"] > 0
    assert raw["bytes_per_entry_at_cap"] > 73
    assert raw["zadd_server_us"] > 0 and raw["zrevrange10_server_us"] > 0


async def test_redis_delta_counts_commands_between_snapshots(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        before = await redis_counters(client)
        for n in range(10):
            await client.zadd("bench-delta-test", {f"m{n}": n})
        await client.zscore("bench-delta-test", "m1")  # a harness probe: left out
        script = "return redis.call('ZCARD', KEYS[1])"
        await client.eval(script, 1, "bench-delta-test")  # type: ignore[misc]
        after = await redis_counters(client)
        await client.delete("bench-delta-test")
    finally:
        await client.aclose()
    delta = redis_delta(before, after, per=10)
    assert delta["commands"]["zadd"]["calls"] == 10
    assert "zscore" not in delta["commands"]
    assert delta["commands"]["eval"]["calls"] == 1
    # The script's line is left out of the total; its inner ZCARD is a harness command name
    # too, so the total is the ZADDs (and the test's own DEL is after the snapshot).
    assert delta["calls"] == 10
    assert delta["command_us_per"] == delta["command_usec"] / 10
    assert delta["server_cpu_us"] >= 0


def _row(n: int, push: float, pull: float) -> dict[str, object]:
    return {"followees": n, "push": {"p99_ms": push}, "pull": {"p99_ms": pull}}


def test_crossover_and_targets() -> None:
    rows = [_row(10, 5, 2), _row(100, 5, 4), _row(300, 5, 20), _row(1000, 5, 80)]
    assert crossover(rows) == {"pull_slower_from": 300, "pull_as_fast_up_to": 100}
    assert crossover(rows[2:])["pull_slower_from"] == 300
    assert crossover(rows[:2])["pull_slower_from"] is None
    results = {
        "home_feed": {
            "sustainable_rps": 300,
            "at_sustainable": {"cpu": {"cpu_ms_per_request": {"total": 2.5}}},
        },
        "mixed": {"sustainable_rps": 100, "at_sustainable": {"fanout": {"p99_ms": 400.0}}},
        "fanout": {
            "by_followers": [
                {"followers": 10, "deliveries_per_s_per_post_median": 1_000.0},
                {"followers": 100_000, "deliveries_per_s_per_post_median": 90_000.0},
            ],
            "raw_zadd": {"zadd_per_s": 300_000.0},
        },
        "push_vs_pull": {"by_followees": rows},
        "memory": {"bytes_per_entry": 120.0},
    }
    assert targets(results) == {
        "home_feed_sustainable_rps": 300,
        "cpu_ms_per_home_feed_read": 2.5,
        "mixed_sustainable_rps": 100,
        "fanout_vs_raw_zadd": 0.3,
        "fanout_visible_p99_ms": 400.0,
        "push_vs_pull_p99_ratio_300": 4.0,
        "redis_bytes_per_feed_entry": 120.0,
    }
    assert all(v is None for v in targets({}).values())
