"""``python -m feed_service.reconcile [--user ID ...] [--all]``: compare feeds with the
sources of truth (network_service followees/followers, post_service posts) and repair drift.

For each user with a built feed it fixes the followee and follower replicas, removes feed
entries that should not be there (deleted posts, authors no longer followed, unless the post
mentions the user) and adds missing recent posts of followees. It prints what it fixed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import typer

from common.logging import configure_logging
from feed_service.app import FeedRuntime, open_runtime
from feed_service.repository.sources import SourceNotFound
from feed_service.service.feed_manager import entry_author, entry_refs
from feed_service.settings import FeedSettings

__all__ = ["Report", "reconcile_user", "reconcile_users"]

_BATCH = 100


@dataclass
class Report:
    users: int = 0
    entries_added: int = 0
    entries_removed: int = 0
    followees_fixed: int = 0
    followers_fixed: int = 0
    details: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"reconciled {self.users} feed(s): {self.entries_added} entries added, "
            f"{self.entries_removed} removed, {self.followees_fixed} followee and "
            f"{self.followers_fixed} follower replica entries fixed"
        )


async def reconcile_user(runtime: FeedRuntime, user_id: str, report: Report) -> None:
    feeds = runtime.feeds
    report.users += 1
    try:
        followees = set(await feeds.network.followees(user_id))
        followers = set(await feeds.network.followers(user_id))
    except SourceNotFound:
        await feeds.drop_user(user_id)
        report.details.append(f"{user_id}: account gone, feed data dropped")
        return

    fixed = await feeds.sync_followers(user_id, followers)
    report.followers_fixed += fixed
    if fixed:
        report.details.append(f"{user_id}: {fixed} follower replica entries fixed")

    if not await feeds.is_built(user_id):
        return  # an unbuilt feed is rebuilt from the sources on its next read anyway

    fixed = await feeds.sync_following(user_id, followees)
    if fixed:
        report.followees_fixed += fixed
        report.details.append(f"{user_id}: {fixed} followee replica entries fixed")

    current = await feeds.entries(user_id)
    allowed_authors = followees | {user_id}
    refs = entry_refs(list(current.items()))
    existing: dict[str, list[str]] = {}
    for start in range(0, len(refs), _BATCH):
        ids = [post_id for _m, post_id, _a in refs[start : start + _BATCH]]
        for post in await feeds.posts.batch(ids, None):
            existing[post["id"]] = [m["id"] for m in post.get("mentions") or []]
    extra = []
    for member, post_id, author_id in refs:
        gone = post_id not in existing
        if gone or (author_id not in allowed_authors and user_id not in existing[post_id]):
            extra.append(member)
    if extra:
        await feeds.remove([user_id], extra)
        report.entries_removed += len(extra)
        report.details.append(f"{user_id}: removed {len(extra)} stale entries")

    cap = feeds.settings.feed_cap
    big = set(await feeds.followed_big_authors(user_id)) - {user_id}
    expected = [
        (member, ms)
        for member, ms in await feeds.source_entries(sorted(allowed_authors))
        if entry_author(member) not in big
    ]
    expected.sort(key=lambda e: (e[1], e[0]), reverse=True)
    expected = expected[:cap]
    kept = len(current) - len(extra)
    floor = min((s for m, s in current.items() if m not in extra), default=None)
    missing = [
        e
        for e in expected
        if e[0] not in current and (kept < cap or floor is None or e[1] >= floor)
    ]
    missing = await feeds.without_tombstones(missing)
    if missing:
        await feeds.insert([user_id], missing)
        report.entries_added += len(missing)
        report.details.append(f"{user_id}: added {len(missing)} missing entries")


async def _all_users(runtime: FeedRuntime) -> list[str]:
    return sorted({user_id async for user_id in runtime.feeds.built_users()})


async def reconcile_users(
    settings: FeedSettings, user_ids: Sequence[str], *, everyone: bool
) -> Report:
    report = Report()
    async with open_runtime(settings) as runtime:
        targets = list(user_ids) or (await _all_users(runtime) if everyone else [])
        for user_id in targets:
            await reconcile_user(runtime, user_id, report)
    return report


def main(
    user: list[str] = typer.Option([], "--user", help="user id (repeatable)"),
    all_users: bool = typer.Option(False, "--all", help="every built feed"),
) -> None:
    settings = FeedSettings()
    configure_logging("feed_service.reconcile", settings.log_level)
    if not user and not all_users:
        raise typer.BadParameter("give --user ID (repeatable) or --all")
    report = asyncio.run(reconcile_users(settings, user, everyone=all_users))
    for line in report.details:
        typer.echo(line)
    typer.echo(report.summary())


if __name__ == "__main__":
    typer.run(main)
