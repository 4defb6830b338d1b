"""Loading users and follows: through the public API, or straight into feed_service's Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from bench.graph import Graph
from feed_service.repository import keys

__all__ = [
    "RETRIED",
    "Account",
    "ApiLoader",
    "forget_follower_replicas",
    "load_follows_into_neo4j",
    "load_synthetic_followers",
    "wait_until",
]

PASSWORD = "bench-password-1"
T = TypeVar("T")
# Statuses and transport errors retried while loading, by kind (reported with the run): a
# 500 is retried too, so a struggling dependency on a busy machine does not end the load,
# but it is counted, since the platform should have answered 503.
RETRIED: dict[str, int] = {}


@dataclass(frozen=True)
class Account:
    index: int
    user_id: str
    username: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


async def _bounded(items: Sequence[T], limit: int, work: Callable[[T], Awaitable[None]]) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with semaphore:
            await work(item)

    await asyncio.gather(*(one(i) for i in items))


async def _retrying(
    send: Callable[[], Awaitable[httpx.Response]],
    ok: set[int],
    *,
    also_retry: frozenset[int] = frozenset(),
) -> httpx.Response:
    """Retry 429/5xx and transport errors with backoff: loading must not stop on a hiccup."""
    delay = 0.2
    for _attempt in range(10):
        try:
            response = await send()
        except httpx.TransportError:
            RETRIED["transport"] = RETRIED.get("transport", 0) + 1
            await asyncio.sleep(delay)
            delay *= 2
            continue
        if response.status_code in ok:
            return response
        if response.status_code not in {429, 500, 502, 503, 504, *also_retry}:
            raise RuntimeError(f"unexpected {response.status_code}: {response.text[:300]}")
        RETRIED[str(response.status_code)] = RETRIED.get(str(response.status_code), 0) + 1
        await asyncio.sleep(min(float(response.headers.get("retry-after", delay)), delay))
        delay = min(delay * 2, 5.0)
    raise RuntimeError("gave up after retries")


class ApiLoader:
    """Registers, logs in and follows through the gateway, as a client would."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        prefix: str,
        concurrency: int = 16,
        follow_concurrency: int = 32,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.concurrency = concurrency
        self.follow_concurrency = follow_concurrency

    async def register(self, indices: Sequence[int]) -> dict[int, Account]:
        accounts: dict[int, Account] = {}

        async def one(i: int) -> None:
            username = f"{self.prefix}{i}"
            body = {
                "username": username,
                "email": f"{username}@bench.example",
                "password": PASSWORD,
            }
            created = await _retrying(
                lambda: self.client.post("/api/v1/auth/register", json=body), {201}
            )
            login = await _retrying(
                lambda: self.client.post(
                    "/api/v1/auth/login", json={"login": username, "password": PASSWORD}
                ),
                {200},
            )
            accounts[i] = Account(i, created.json()["id"], username, login.json()["access_token"])

        await _bounded(list(indices), self.concurrency, one)
        return accounts

    async def follow_all(self, graph: Graph, accounts: dict[int, Account]) -> None:
        async def one(pair: tuple[int, int]) -> None:
            await self.follow(accounts[pair[0]], accounts[pair[1]].user_id)

        await _bounded(graph.follows, self.follow_concurrency, one)

    async def follow(self, follower: Account, followee_id: str) -> None:
        # network_service learns of a new account from its user.registered event: until then
        # following it is a 404, so a follow right after registration is retried.
        await _retrying(
            lambda: self.client.put(f"/api/v1/me/following/{followee_id}", headers=follower.auth),
            {204},
            also_retry=frozenset({404}),
        )

    async def read_feeds(self, accounts: Sequence[Account]) -> None:
        """One home-feed read per account: builds every feed, as active users' feeds are."""

        async def one(account: Account) -> None:
            await _retrying(lambda: self.client.get("/api/v1/me/feed", headers=account.auth), {200})

        await _bounded(list(accounts), self.concurrency, one)


async def load_synthetic_followers(
    redis: Any, author_id: str, follower_ids: Sequence[str], *, idle_ttl_ms: int
) -> None:
    """Give ``author_id`` followers that exist only in feed_service's Redis.

    Loading 100,000 accounts through the API would take hours at bcrypt cost and minutes even
    at cost 4; what fan-out touches is feed_service's follower replica and each follower's feed
    marker (a feed without its marker counts as inactive and is skipped), so those are written
    directly, with feed_service's own key functions. The followers' ``following`` sets get the
    author too, which the hybrid read path consults.
    """
    for start in range(0, len(follower_ids), 5000):
        chunk = follower_ids[start : start + 5000]
        pipe = redis.pipeline(transaction=False)
        pipe.sadd(keys.followers(author_id), *chunk)
        for follower in chunk:
            pipe.hset(keys.feed_meta(follower), mapping={"built_at": int(time.time() * 1000)})
            pipe.pexpire(keys.feed_meta(follower), idle_ttl_ms)
            pipe.sadd(keys.following(follower), author_id)
        await pipe.execute()
    await redis.set(keys.followers_meta(author_id), "1")


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float, interval_s: float = 0.5
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval_s)
    return False


async def load_follows_into_neo4j(
    bolt_uri: str, follows: Sequence[tuple[str, str]], *, batch: int = 5000
) -> None:
    """MERGE ``(follower)-[:FOLLOWS]->(followee)`` in network_service's layout, UNWIND-batched.

    Used for the bulk of a graph when following through the API would take longer than the
    run (see docs/benchmarks.md); no events are published, so the follower replicas of
    feed_service are then rebuilt by feed_service itself (:func:`forget_follower_replicas`).
    """
    from neo4j import AsyncGraphDatabase

    now_ms = int(time.time() * 1000)
    rows = [
        {"f": f, "e": e, "marker": f"bench-{n}", "since": now_ms}
        for n, (f, e) in enumerate(follows)
    ]
    driver = AsyncGraphDatabase.driver(bolt_uri, auth=None)
    try:
        async with driver.session() as session:
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                await session.run(
                    """
                    UNWIND $rows AS row
                    MATCH (a:User {id: row.f}), (b:User {id: row.e})
                    MERGE (a)-[r:FOLLOWS]->(b)
                      ON CREATE SET r.since = row.since, r.marker = row.marker,
                                    r.follower_id = a.id, r.followee_id = b.id
                    """,
                    rows=chunk,
                )
    finally:
        await driver.close()


async def forget_follower_replicas(redis: Any, user_ids: Sequence[str]) -> None:
    """Drop feed_service's "follower set complete" markers, so it refetches each set from
    network_service on the next fan-out (its documented rebuild path)."""
    pipe = redis.pipeline(transaction=False)
    for user_id in user_ids:
        pipe.delete(keys.followers_meta(user_id))
    await pipe.execute()
