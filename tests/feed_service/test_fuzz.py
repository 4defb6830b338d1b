"""feed_service's whole OpenAPI fuzzed (tests/support/fuzz.py): no answer is a 5xx."""

from __future__ import annotations

from typing import Any

import pytest

from common.events import PostLiked
from common.ids import new_id
from tests.feed_service.conftest import FeedHarness, RedisTarget, flush
from tests.feed_service.test_notifications import _deliver, _registered
from tests.support.fuzz import fuzz_service


@pytest.fixture
async def redis_target(redis_url: str) -> RedisTarget:
    """Single-node Redis only: the cluster adds run time, not other input handling."""
    target = RedisTarget(redis_url, cluster=False)
    await flush(target)
    return target


async def test_no_server_errors(harness_factory: Any) -> None:
    h: FeedHarness = await harness_factory(run_workers=False, http=True)
    assert h.url is not None
    alice, bob = await _registered(h, "alice"), await _registered(h, "bob")
    # Something to list and mark read, so those paths run past the empty case.
    await _deliver(h, PostLiked(post_id=new_id(), post_author_id=alice.id, user_id=bob.id))
    report = await fuzz_service(h.feed.openapi(), h.url, token=alice.token)
    print(f"feed_service: {report.requests} requests in {report.seconds:.1f} s")
    assert report.requests > 30
    assert report.server_errors == [], "\n".join(report.server_errors)
