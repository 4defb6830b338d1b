"""python -m feed_service.reconcile: finds drift against the sources of truth and repairs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from common.ids import new_id
from feed_service.reconcile import reconcile_users
from tests.feed_service.conftest import FeedHarness
from tests.support.polling import eventually


async def test_reconcile_repairs_drift_and_reports_it(h: FeedHarness) -> None:
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    await h.feed_page(bob)
    await h.follow(bob, alice)
    await eventually(lambda: h.redis.sismember(f"followers:{{u:{alice.id}}}", bob.id))
    a1, a2 = await h.post(alice, "a1"), await h.post(alice, "a2")
    mention = await h.post(carol, f"hey @{bob.username}")
    assert [m["id"] for m in mention["mentions"]] == [bob.id]
    expected = [mention["id"], a2["id"], a1["id"]]

    async def settled() -> bool:
        return await h.feed_ids(bob) == expected

    await eventually(settled)

    feed = f"feed:{{u:{bob.id}}}"
    await h.redis.zrem(feed, f"{a1['id']}:{alice.id}")  # lost entry
    stranger = await h.post(carol, "not for bob")
    await h.redis.zadd(feed, {f"{stranger['id']}:{carol.id}": 1})  # author not followed
    await h.redis.zadd(feed, {f"{new_id()}:{alice.id}": 2})  # post that does not exist
    await h.redis.srem(f"following:{{u:{bob.id}}}", alice.id)
    await h.redis.srem(f"followers:{{u:{alice.id}}}", bob.id)

    report = await reconcile_users(h.settings, [bob.id, alice.id], everyone=False)
    assert (report.entries_added, report.entries_removed) == (1, 2)
    assert (report.followees_fixed, report.followers_fixed) == (1, 1)
    members = await h.redis.zrange(feed, 0, -1)
    assert sorted(members) == sorted(
        [f"{a1['id']}:{alice.id}", f"{a2['id']}:{alice.id}", f"{mention['id']}:{carol.id}"]
    )
    assert await h.redis.sismember(f"following:{{u:{bob.id}}}", alice.id)
    assert await h.redis.sismember(f"followers:{{u:{alice.id}}}", bob.id)

    # The command line prints what it fixed.
    await h.redis.zrem(feed, f"{a2['id']}:{alice.id}")
    env = {
        **os.environ,
        "FEED_REDIS_URL": h.settings.redis_url,
        "FEED_REDIS_CLUSTER": "true" if h.settings.redis_cluster else "false",
        "FEED_POST_SERVICE_URL": h.settings.post_service_url,
        "FEED_NETWORK_SERVICE_URL": h.settings.network_service_url,
        "FEED_AMQP_URL": h.settings.amqp_url.get_secret_value(),
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "feed_service.reconcile", "--user", bob.id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"{bob.id}: added 1 missing entries" in result.stdout
    assert "reconciled 1 feed(s): 1 entries added, 0 removed" in result.stdout
    assert await h.feed_ids(bob) == expected


async def test_reconcile_needs_a_target() -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "feed_service.reconcile"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--user" in result.stderr
