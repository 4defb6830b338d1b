"""A bounded write load through the gateway: users posting, editing, deleting, liking,
commenting, following and unfollowing, each in its own asyncio task, plus new registrations.

Every write is recorded in the `Ledger` with its outcome; every request (reads too) with its
status and time, for the availability check. Each resource is written by one task only, one
request at a time (see `tests.chaos.model`), and nothing is retried: a retry would turn one
unknown outcome into two writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.chaos.model import Ledger, Outcome, Request

PASSWORD = "correct horse battery staple"


@dataclass
class PostRef:
    token: str
    id: str
    author_id: str
    base: str  # content without the edit suffix (keeps the token and the mention)
    edits: int = 0


@dataclass
class LoadUser:
    username: str
    id: str
    token: str = ""
    posts: list[PostRef] = field(default_factory=list)
    comments: list[tuple[str, str]] = field(default_factory=list)  # (comment token, id)
    liked: set[str] = field(default_factory=set)  # post tokens
    following: set[str] = field(default_factory=set)  # user ids


@dataclass(frozen=True)
class LoadShape:
    users: int
    think_s: float  # mean pause of a user between two requests
    register_every_s: float  # one new account this often
    burst_per_user: int  # concurrent feed reads per user in a burst


class LoadDriver:
    """Drives the load and keeps the `Ledger`; `burst()` sends many reads at once."""

    def __init__(self, gateway_url: str, shape: LoadShape, seed: int = 12) -> None:
        self.ledger = Ledger()
        self.shape = shape
        self.rng = random.Random(seed)
        self.run_id = uuid.uuid4().hex[:6]
        self.users: list[LoadUser] = []
        self.pool: list[PostRef] = []  # acknowledged posts anyone may like or comment on
        self._registered = 0
        self._client = httpx.AsyncClient(
            base_url=gateway_url,
            timeout=httpx.Timeout(15.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- requests ------------------------------------------------------------------------

    async def send(
        self, method: str, url: str, route: str, user: LoadUser | None = None, **kwargs: Any
    ) -> httpx.Response | None:
        """One request, recorded; None when no answer came (refused, reset, timed out)."""
        headers = {"Authorization": f"Bearer {user.token}"} if user is not None else {}
        started = time.monotonic()
        try:
            response = await self._client.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            self.ledger.requests.append(
                Request(method, route, started, time.monotonic(), None, type(exc).__name__)
            )
            return None
        self.ledger.requests.append(
            Request(method, route, started, time.monotonic(), response.status_code)
        )
        return response

    async def register(self, label: str) -> LoadUser | None:
        self._registered += 1
        username = f"c{self.run_id}_{label}{self._registered}"
        email = f"{username}@example.com"
        body = {"username": username, "email": email, "password": PASSWORD}
        response = await self.send(
            "POST", "/api/v1/auth/register", "/api/v1/auth/register", json=body
        )
        status = response.status_code if response is not None else None
        user_id = str(response.json()["id"]) if response is not None and status == 201 else None
        self.ledger.registered(username, email, Outcome.of(status), user_id)
        return LoadUser(username, user_id) if user_id is not None else None

    async def login(self, user: LoadUser) -> bool:
        body = {"login": user.username, "password": PASSWORD}
        response = await self.send("POST", "/api/v1/auth/login", "/api/v1/auth/login", json=body)
        if response is None or response.status_code != 200:
            return False
        user.token = str(response.json()["access_token"])
        return True

    # -- set-up, run, bursts --------------------------------------------------------------

    async def setup(self, deadline_s: float = 60.0) -> None:
        """Registers and logs in the load's users (before any fault: these must succeed)."""
        deadline = time.monotonic() + deadline_s
        while len(self.users) < self.shape.users:
            user = await self.register("u")
            if user is not None and await self.login(user):
                self.users.append(user)
            elif time.monotonic() > deadline:
                raise AssertionError("could not register the load's users on a healthy platform")

    async def warm_up(self, deadline_s: float = 120.0) -> None:
        """Each user's first feed read builds her feed (network_service's first graph query,
        post_service's first reads): on a cold, loaded machine that can take longer than a
        service's internal timeout. Retried until every user's read answers 200."""
        pending = list(self.users)
        deadline = time.monotonic() + deadline_s
        while pending:
            answers = await asyncio.gather(*(self._read_feed(u) for u in pending))
            ok = [r is not None and r.status_code == 200 for r in answers]
            pending = [u for u, done in zip(pending, ok, strict=True) if not done]
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"{len(pending)} feeds unreadable on a healthy platform")
            if pending:
                await asyncio.sleep(1.0)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: every user acts in its own task; new accounts now and then."""
        tasks = [asyncio.create_task(self._user_loop(u, stop)) for u in self.users]
        tasks.append(asyncio.create_task(self._registrar(stop)))
        await asyncio.gather(*tasks)

    async def burst(self) -> None:
        """Many concurrent reads (and a few registrations): a service whose pooled connections
        died with a restarted dependency fails some of them."""
        reads = [
            self.send("GET", "/api/v1/me/feed", "/api/v1/me/feed", u, params={"limit": 20})
            for u in self.users
            for _ in range(self.shape.burst_per_user)
        ]
        reads += [
            self.send("GET", "/api/v1/me/notifications", "/api/v1/me/notifications", u)
            for u in self.users
        ]
        reads += [
            self.send("GET", f"/api/v1/users/{u.id}/posts", "/api/v1/users/{id}/posts")
            for u in self.users
        ]
        await asyncio.gather(*reads, self.register("b"), self.register("b"))

    async def post_like_read(self) -> None:
        """While the broker is down: A posts, B likes it, A reads her feed (the read caches a
        copy of the post that already counts the like its event will count again)."""
        author, liker = self.users[0], self.users[1]
        response = await self._post(author)
        if response is None or response.status_code != 201:
            return
        ref = author.posts[-1]
        r = await self.send("PUT", f"/api/v1/posts/{ref.id}/like", "/api/v1/posts/{id}/like", liker)
        outcome = Outcome.of(r.status_code if r is not None else None)
        self.ledger.liked(liker.id, ref.token, True, outcome)
        if outcome is not Outcome.REJECTED:
            liker.liked.add(ref.token)
        await self._read_feed(author)

    async def _registrar(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.register("r")
            await _sleep_or_stop(stop, self.shape.register_every_s)

    async def _user_loop(self, user: LoadUser, stop: asyncio.Event) -> None:
        actions = [
            (self._post, 25),
            (self._like, 18),
            (self._unlike, 5),
            (self._comment, 12),
            (self._delete_comment, 3),
            (self._follow, 12),
            (self._unfollow, 5),
            (self._edit, 6),
            (self._delete_post, 3),
            (self._read_feed, 11),
        ]
        functions, weights = zip(*actions, strict=True)
        while not stop.is_set():
            action = self.rng.choices(functions, weights)[0]
            response = await action(user)
            if response is not None and response.status_code == 401:
                await self.login(user)
            await _sleep_or_stop(stop, self.rng.uniform(0.5, 1.5) * self.shape.think_s)

    # -- actions (each returns the response, None when none came or nothing was sent) -----

    async def _post(self, user: LoadUser) -> httpx.Response | None:
        token = f"p-{self.rng.getrandbits(40):010x}"
        content = f"{token} chaos post by {user.username}"
        if self.rng.random() < 0.15:
            other = self.rng.choice([u for u in self.users if u is not user])
            content += f" to @{other.username}"
        r = await self.send(
            "POST", "/api/v1/posts", "/api/v1/posts", user, json={"content": content}
        )
        status = r.status_code if r is not None else None
        self.ledger.posted(token, user.id, content, Outcome.of(status))
        if r is not None and status == 201:
            ref = PostRef(token, str(r.json()["id"]), user.id, content)
            user.posts.append(ref)
            self.pool.append(ref)
        return r

    async def _edit(self, user: LoadUser) -> httpx.Response | None:
        if not user.posts:
            return None
        ref = self.rng.choice(user.posts)
        ref.edits += 1
        content = f"{ref.base} (edit {ref.edits})"
        r = await self.send(
            "PATCH",
            f"/api/v1/posts/{ref.id}",
            "/api/v1/posts/{id}",
            user,
            json={"content": content},
        )
        self.ledger.edited(ref.token, content, Outcome.of(r.status_code if r is not None else None))
        return r

    async def _delete_post(self, user: LoadUser) -> httpx.Response | None:
        if not user.posts:
            return None
        ref = user.posts.pop(self.rng.randrange(len(user.posts)))
        if ref in self.pool:
            self.pool.remove(ref)
        r = await self.send("DELETE", f"/api/v1/posts/{ref.id}", "/api/v1/posts/{id}", user)
        self.ledger.deleted_post(ref.token, Outcome.of(r.status_code if r is not None else None))
        return r

    async def _like(self, user: LoadUser) -> httpx.Response | None:
        if not self.pool:
            return None
        ref = self.rng.choice(self.pool)
        r = await self.send("PUT", f"/api/v1/posts/{ref.id}/like", "/api/v1/posts/{id}/like", user)
        outcome = Outcome.of(r.status_code if r is not None else None)
        self.ledger.liked(user.id, ref.token, True, outcome)
        if outcome is not Outcome.REJECTED:
            user.liked.add(ref.token)
        return r

    async def _unlike(self, user: LoadUser) -> httpx.Response | None:
        refs = [ref for ref in self.pool if ref.token in user.liked]
        if not refs:
            return None
        ref = self.rng.choice(refs)
        r = await self.send(
            "DELETE", f"/api/v1/posts/{ref.id}/like", "/api/v1/posts/{id}/like", user
        )
        outcome = Outcome.of(r.status_code if r is not None else None)
        self.ledger.liked(user.id, ref.token, False, outcome)
        if outcome is Outcome.ACKED:
            user.liked.discard(ref.token)
        return r

    async def _comment(self, user: LoadUser) -> httpx.Response | None:
        if not self.pool:
            return None
        ref = self.rng.choice(self.pool)
        token = f"c-{self.rng.getrandbits(40):010x}"
        r = await self.send(
            "POST",
            f"/api/v1/posts/{ref.id}/comments",
            "/api/v1/posts/{id}/comments",
            user,
            json={"content": f"{token} a comment"},
        )
        status = r.status_code if r is not None else None
        self.ledger.commented(token, ref.token, Outcome.of(status))
        if r is not None and status == 201:
            user.comments.append((token, str(r.json()["id"])))
        return r

    async def _delete_comment(self, user: LoadUser) -> httpx.Response | None:
        if not user.comments:
            return None
        token, comment_id = user.comments.pop(self.rng.randrange(len(user.comments)))
        r = await self.send(
            "DELETE", f"/api/v1/comments/{comment_id}", "/api/v1/comments/{id}", user
        )
        self.ledger.deleted_comment(token, Outcome.of(r.status_code if r is not None else None))
        return r

    async def _follow(self, user: LoadUser) -> httpx.Response | None:
        other = self.rng.choice([u for u in self.users if u is not user])
        r = await self.send(
            "PUT", f"/api/v1/me/following/{other.id}", "/api/v1/me/following/{id}", user
        )
        outcome = Outcome.of(r.status_code if r is not None else None)
        self.ledger.followed(user.id, other.id, True, outcome)
        if outcome is not Outcome.REJECTED:
            user.following.add(other.id)
        return r

    async def _unfollow(self, user: LoadUser) -> httpx.Response | None:
        if not user.following:
            return None
        other = self.rng.choice(sorted(user.following))
        r = await self.send(
            "DELETE", f"/api/v1/me/following/{other}", "/api/v1/me/following/{id}", user
        )
        outcome = Outcome.of(r.status_code if r is not None else None)
        self.ledger.followed(user.id, other, False, outcome)
        if outcome is Outcome.ACKED:
            user.following.discard(other)
        return r

    async def _read_feed(self, user: LoadUser) -> httpx.Response | None:
        return await self.send(
            "GET", "/api/v1/me/feed", "/api/v1/me/feed", user, params={"limit": 20}
        )


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
