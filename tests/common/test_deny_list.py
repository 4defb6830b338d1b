"""The deleted-accounts deny-list: which tokens it refuses, for how long, and its reloads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.errors import Unauthorized
from common.security import AccessClaims, DeletedUsers


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _claims(sub: str) -> AccessClaims:
    return AccessClaims(sub=sub, username="u", jti="j", iat=0, exp=0)


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def test_reload_denies_recent_deletions_until_keep_s_after_them() -> None:
    clock = Clock(10_000.0)
    asked: list[datetime] = []
    store = [("gone", _at(9_990.0)), ("old", _at(8_000.0))]

    async def load(since: datetime) -> list[tuple[str, datetime]]:
        asked.append(since)
        return [(u, at) for u, at in store if at >= since]

    deny = DeletedUsers(load, keep_s=960, clock=clock)
    assert "gone" not in deny and not deny.loaded
    await deny.refresh()
    assert deny.loaded
    assert asked == [_at(10_000.0 - 960)]
    assert "gone" in deny and "old" not in deny and "alive" not in deny
    with pytest.raises(Unauthorized) as refused:
        deny.check(_claims("gone"))
    assert refused.value.status == 401
    deny.check(_claims("alive"))

    clock.now = 9_990.0 + 960 + 1  # every token the account had has expired
    assert "gone" not in deny
    await deny.refresh()
    assert len(deny) == 0


async def test_a_local_addition_survives_a_reload_that_has_not_seen_it_yet() -> None:
    clock = Clock(10_000.0)

    async def load(since: datetime) -> list[tuple[str, datetime]]:
        return []

    deny = DeletedUsers(load, keep_s=960, clock=clock)
    deny.add("just-now", _at(10_000.0))
    await deny.refresh()
    assert "just-now" in deny


async def test_a_failed_reload_keeps_the_last_set() -> None:
    clock = Clock(10_000.0)
    fail = False

    async def load(since: datetime) -> list[tuple[str, datetime]]:
        if fail:
            raise ConnectionError("store down")
        return [("gone", _at(9_999.0))]

    deny = DeletedUsers(load, keep_s=960, refresh_interval_s=0, clock=clock)
    await deny.refresh()
    fail = True
    with pytest.raises(ConnectionError):
        await deny.refresh()
    assert "gone" in deny
