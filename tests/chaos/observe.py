"""Reads the platform's state for the consistency check: the public API through the gateway,
the mail catcher's HTTP API and the RabbitMQ management API. Nothing here reads a database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from tests.chaos.checks import Mail, Observation, PostView, Queue
from tests.chaos.load import LoadUser
from tests.chaos.model import Ledger

T = TypeVar("T")


class Observer:
    """One observation pass; reads that do not answer 2xx go to `failed_reads`."""

    def __init__(
        self,
        gateway_url: str,
        mail_api_url: str,
        management_url: str,
        vhost: str = "/",
        feed_cap: int = 800,
    ) -> None:
        self.gateway_url = gateway_url
        self.mail_api_url = mail_api_url
        self.management_url = management_url
        self.vhost = vhost
        self.feed_cap = feed_cap
        self.failed_reads: list[str] = []  # kept across passes: every failure counts
        self._limit = asyncio.Semaphore(16)

    async def observe(self, ledger: Ledger, users: list[LoadUser]) -> Observation:
        async with httpx.AsyncClient(base_url=self.gateway_url, timeout=15.0) as gw:
            self._gw = gw
            obs = Observation(feed_cap=self.feed_cap)
            ids = await self._gather(self._user_id(name) for name in ledger.users)
            obs.users = {name: uid for name, uid in zip(ledger.users, ids, strict=True) if uid}
            people = [u.id for u in users]
            timelines = await self._gather(
                self._pages(f"/api/v1/users/{uid}/posts", "/api/v1/users/{id}/posts")
                for uid in people
            )
            obs.timelines = {
                uid: [_post(p) for p in posts] for uid, posts in zip(people, timelines, strict=True)
            }
            post_ids = [p.id for posts in obs.timelines.values() for p in posts]
            likers = await self._gather(
                self._pages(f"/api/v1/posts/{pid}/likes", "/api/v1/posts/{id}/likes")
                for pid in post_ids
            )
            obs.likers = {
                pid: [u["id"] for u in page] for pid, page in zip(post_ids, likers, strict=True)
            }
            comments = await self._gather(
                self._pages(f"/api/v1/posts/{pid}/comments", "/api/v1/posts/{id}/comments")
                for pid in post_ids
            )
            obs.comments = {
                pid: [c["content"] for c in page]
                for pid, page in zip(post_ids, comments, strict=True)
            }
            following = await self._gather(
                self._pages(f"/api/v1/users/{uid}/following", "/api/v1/users/{id}/following")
                for uid in people
            )
            followers = await self._gather(
                self._pages(f"/api/v1/users/{uid}/followers", "/api/v1/users/{id}/followers")
                for uid in people
            )
            obs.following = {
                uid: [f["id"] for f in page] for uid, page in zip(people, following, strict=True)
            }
            obs.followers = {
                uid: [f["id"] for f in page] for uid, page in zip(people, followers, strict=True)
            }
            counts = await self._gather(self._counts(uid) for uid in people)
            obs.counts = {uid: c for uid, c in zip(people, counts, strict=True) if c is not None}
            feeds = await self._gather(
                self._pages("/api/v1/me/feed", "/api/v1/me/feed", user, self.feed_cap + 100)
                for user in users
            )
            obs.feeds = {
                user.id: [_post(p) for p in feed] for user, feed in zip(users, feeds, strict=True)
            }
        obs.mails = await self.mails()
        obs.queues = await self.queues()
        obs.failed_reads = list(self.failed_reads)
        return obs

    async def _gather(self, calls: Iterable[Awaitable[T]]) -> list[T]:
        async def limited(call: Awaitable[T]) -> T:
            async with self._limit:
                return await call

        return list(await asyncio.gather(*(limited(c) for c in calls)))

    async def _get(
        self, url: str, route: str, user: LoadUser | None = None, **params: Any
    ) -> httpx.Response | None:
        headers = {"Authorization": f"Bearer {user.token}"} if user is not None else {}
        try:
            response = await self._gw.get(url, headers=headers, params=params)
        except httpx.HTTPError as exc:
            self.failed_reads.append(f"GET {route}: {type(exc).__name__}")
            return None
        if response.status_code >= 500:
            self.failed_reads.append(f"GET {route}: {response.status_code}")
            return None
        return response

    async def _user_id(self, username: str) -> str | None:
        route = "/api/v1/users/by-username/{username}"
        response = await self._get(f"/api/v1/users/by-username/{username}", route)
        if response is None or response.status_code == 404:
            return None
        response.raise_for_status()
        return str(response.json()["id"])

    async def _pages(
        self, url: str, route: str, user: LoadUser | None = None, most: int = 100_000
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(items) < most:
            params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            response = await self._get(url, route, user, **params)
            if response is None:
                return items
            response.raise_for_status()
            page = response.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        return items

    async def _counts(self, user_id: str) -> tuple[int, int] | None:
        route = "/api/v1/users/{id}/relationship"
        response = await self._get(f"/api/v1/users/{user_id}/relationship", route)
        if response is None:
            return None
        body = response.raise_for_status().json()
        return int(body["followers_count"]), int(body["following_count"])

    async def mails(self) -> list[Mail]:
        """Every caught mail, from Mailpit's message list."""
        async with httpx.AsyncClient(base_url=self.mail_api_url, timeout=15.0) as client:
            body = (
                (await client.get("/api/v1/messages", params={"limit": 100_000}))
                .raise_for_status()
                .json()
            )
        return [
            Mail(
                tuple(a["Address"].lower() for a in m.get("To") or []),
                str(m.get("Subject", "")),
                str(m.get("MessageID", "")),
            )
            for m in body["messages"]
        ]

    async def queues(self) -> list[Queue]:
        url = f"{self.management_url}/api/queues/{quote(self.vhost, safe='')}"
        async with httpx.AsyncClient(auth=("guest", "guest"), timeout=15.0) as client:
            body = (await client.get(url)).raise_for_status().json()
        return [
            Queue(
                str(q["name"]),
                int(q.get("messages_ready", 0) or 0),
                int(q.get("messages_unacknowledged", 0) or 0),
                int(q.get("consumers", 0) or 0),
            )
            for q in body
        ]


def _post(body: dict[str, Any]) -> PostView:
    return PostView(
        id=str(body["id"]),
        author_id=str(body["author"]["id"]),
        content=str(body["content"]),
        created_at=str(body["created_at"]),
        like_count=int(body["like_count"]),
        comment_count=int(body["comment_count"]),
        mention_ids=tuple(str(m["id"]) for m in body.get("mentions") or []),
        liked_by_me=bool(body.get("liked_by_me", False)),
    )
