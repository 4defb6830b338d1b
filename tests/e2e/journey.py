"""The end-to-end journey: two people use Murmur through the gateway only, from registration
to account deletion. Run against services as processes (test_journey.py) and as containers of
the image (tests/deploy/test_image.py)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from tests.support import polling
from tests.support.mailpit import Mailpit

T = TypeVar("T")
# (address, a word of the subject) -> the decoded body of the newest such mail, once it came.
ReadMail = Callable[[str, str], Awaitable[str]]
PASSWORD = "correct horse battery staple"
VERIFY_LINK = re.compile(r"(http://[^\s\"'<>]+/api/v1/auth/verify-email\?token=[A-Za-z0-9_\-\.]+)")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = 15.0
) -> T:
    """Polls until probe returns something truthy (the platform is eventually consistent).

    Every probe is a request through the gateway, so it polls less often than in-process
    tests do: a faster loop would spend the client's rate-limit budget on waiting."""
    return await polling.eventually(probe, what, timeout=timeout_s, interval=0.2)


def read_mail_from(inbox: Mailpit) -> ReadMail:
    """A ReadMail over the development inbox: the text of the newest mail to an address whose
    subject contains a word, once it has arrived."""

    async def read(address: str, subject_word: str) -> str:
        async def probe() -> str | None:
            for mail in await inbox.mails_to(address):
                if subject_word.lower() in mail.subject.lower():
                    return mail.text
            return None

        return await eventually(probe, f"{subject_word} mail to {address}", 30.0)

    return read


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register_and_verify(
    gw: httpx.AsyncClient, read_mail: ReadMail, gateway_url: str, name: str
) -> dict[str, Any]:
    email = f"{name}@example.com"
    r = await gw.post(
        "/api/v1/auth/register",
        json={"username": name, "email": email, "password": PASSWORD, "display_name": name.title()},
    )
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["email_verified"] is False
    assert "password" not in r.text and "hash" not in r.text

    body = await read_mail(email, "verif")
    link = re.search(
        r"(http://[^\s\"'<>]+/api/v1/auth/verify-email\?token=[A-Za-z0-9_\-\.]+)", body
    )
    assert link, "verification link missing from the mail"
    assert link.group(1).startswith(gateway_url)
    page = await gw.get(link.group(1).removeprefix(gateway_url))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")

    r = await gw.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    tokens = r.json()
    me = await gw.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["email_verified"] is True
    return {**user, "token": tokens["access_token"], "refresh": tokens["refresh_token"]}


async def feed_ids(gw: httpx.AsyncClient, token: str) -> list[str]:
    r = await gw.get("/api/v1/me/feed", headers=bearer(token), params={"limit": 100})
    assert r.status_code == 200, r.text
    return [post["id"] for post in r.json()["items"]]


async def two_people_journey(gw: httpx.AsyncClient, read_mail: ReadMail, gateway_url: str) -> None:
    """The whole journey through the gateway client gw, whose base URL is gateway_url."""
    suffix = uuid.uuid4().hex[:8]
    alice = await register_and_verify(gw, read_mail, gateway_url, f"alice_{suffix}")
    bob = await register_and_verify(gw, read_mail, gateway_url, f"bob_{suffix}")
    a, b = bearer(alice["token"]), bearer(bob["token"])

    # No one sees another's email.
    r = await gw.get(f"/api/v1/users/{alice['id']}", headers=b)
    assert r.status_code == 200 and "email" not in r.json()
    r = await gw.get("/api/v1/users", params={"q": f"alice_{suffix}"})
    assert r.status_code == 200 and [u["id"] for u in r.json()["items"]] == [alice["id"]]

    # They follow each other (once network_service has seen both registrations).
    async def follow(headers: dict[str, str], target: str) -> bool:
        r = await gw.put(f"/api/v1/me/following/{target}", headers=headers)
        assert r.status_code in (204, 404), r.text
        return r.status_code == 204

    await eventually(lambda: follow(a, bob["id"]), "alice follows bob")
    await eventually(lambda: follow(b, alice["id"]), "bob follows alice")
    rel = (await gw.get(f"/api/v1/users/{bob['id']}/relationship", headers=a)).json()
    assert rel == {
        "followers_count": 1,
        "following_count": 1,
        "followed_by_me": True,
        "follows_me": True,
    }
    followers = (await gw.get(f"/api/v1/users/{bob['id']}/followers")).json()["items"]
    assert [f["id"] for f in followers] == [alice["id"]]

    # Bob posts, mentioning Alice: in his own feed at once, in hers soon.
    r = await gw.post(
        "/api/v1/posts",
        headers=b,
        json={"content": f"Hello #murmur{suffix} from @{alice['username']}"},
    )
    assert r.status_code == 201, r.text
    post = r.json()
    assert post["hashtags"] == [f"murmur{suffix}"]
    assert [m["id"] for m in post["mentions"]] == [alice["id"]]
    assert post["id"] in await feed_ids(gw, bob["token"])

    async def in_alice_feed() -> bool:
        return post["id"] in await feed_ids(gw, alice["token"])

    await eventually(in_alice_feed, "bob's post in alice's feed", 10)

    # Alice likes and comments; both show in counts and in Bob's notifications.
    assert (await gw.put(f"/api/v1/posts/{post['id']}/like", headers=a)).status_code == 204
    r = await gw.post(f"/api/v1/posts/{post['id']}/comments", headers=a, json={"content": "hi!"})
    assert r.status_code == 201, r.text
    comment = r.json()
    r = await gw.get(f"/api/v1/posts/{post['id']}", headers=a)
    assert r.json()["like_count"] == 1 and r.json()["comment_count"] == 1
    assert r.json()["liked_by_me"] is True

    async def bob_notified() -> set[str] | None:
        r = await gw.get("/api/v1/me/notifications", headers=b)
        assert r.status_code == 200, r.text
        kinds = {n["type"] for n in r.json()["items"] if n["actor"]["id"] == alice["id"]}
        return kinds if {"follow", "like", "comment"} <= kinds else None

    await eventually(bob_notified, "bob's follow, like and comment notifications")

    async def alice_mentioned() -> bool:
        r = await gw.get("/api/v1/me/notifications", headers=a)
        return any(n["type"] == "mention" for n in r.json()["items"])

    await eventually(alice_mentioned, "alice's mention notification")

    # Search and hashtag listing find the post.
    r = await gw.get("/api/v1/posts", params={"q": "hello"})
    assert post["id"] in [p["id"] for p in r.json()["items"]]
    r = await gw.get("/api/v1/posts", params={"tag": f"murmur{suffix}"})
    assert [p["id"] for p in r.json()["items"]] == [post["id"]]

    # Alice cannot edit Bob's post; Bob can, and the edit reaches Alice's feed.
    r = await gw.patch(f"/api/v1/posts/{post['id']}", headers=a, json={"content": "hacked"})
    assert r.status_code == 403
    r = await gw.patch(f"/api/v1/posts/{post['id']}", headers=b, json={"content": "edited hello"})
    assert r.status_code == 200 and r.json()["edited_at"] is not None

    async def edit_visible() -> bool:
        r = await gw.get("/api/v1/me/feed", headers=a)
        return any(
            p["id"] == post["id"] and p["content"] == "edited hello" for p in r.json()["items"]
        )

    await eventually(edit_visible, "edited content in alice's feed")

    # Alice's comment can be deleted by Bob (the post's author).
    assert (await gw.delete(f"/api/v1/comments/{comment['id']}", headers=b)).status_code == 204

    # Bob deletes the post: it leaves Alice's feed.
    assert (await gw.delete(f"/api/v1/posts/{post['id']}", headers=b)).status_code == 204
    assert (await gw.get(f"/api/v1/posts/{post['id']}")).status_code == 404

    async def gone_from_alice() -> bool:
        return post["id"] not in await feed_ids(gw, alice["token"])

    await eventually(gone_from_alice, "deleted post gone from alice's feed")

    # Alice posts, then deletes her account: her post and her follows disappear everywhere.
    r = await gw.post("/api/v1/posts", headers=a, json={"content": "my last words"})
    assert r.status_code == 201
    last = r.json()

    async def in_bob_feed() -> bool:
        return last["id"] in await feed_ids(gw, bob["token"])

    await eventually(in_bob_feed, "alice's post in bob's feed")
    r = await gw.request("DELETE", "/api/v1/me", headers=a, json={"password": "wrong password!"})
    assert r.status_code == 401
    r = await gw.request("DELETE", "/api/v1/me", headers=a, json={"password": PASSWORD})
    assert r.status_code == 202
    assert (await gw.get(f"/api/v1/users/{alice['id']}")).status_code == 404

    async def alice_gone_everywhere() -> bool:
        feed = await feed_ids(gw, bob["token"])
        followers = (await gw.get(f"/api/v1/users/{bob['id']}/followers")).json()["items"]
        post_gone = (await gw.get(f"/api/v1/posts/{last['id']}")).status_code == 404
        return last["id"] not in feed and not followers and post_gone

    await eventually(alice_gone_everywhere, "alice's account removed from every service")
    r = await gw.post("/api/v1/auth/login", json={"login": alice["username"], "password": PASSWORD})
    assert r.status_code == 401


async def _main(gateway_url: str, mail_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30.0) as gw:
        await two_people_journey(gw, read_mail_from(Mailpit(mail_url)), gateway_url)


if __name__ == "__main__":
    # The journey against a running platform (`make up`):
    #   .venv/bin/python -m tests.e2e.journey [http://127.0.0.1:8080 [http://127.0.0.1:8025]]
    import sys

    gateway_url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    mail_url = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8025"
    asyncio.run(_main(gateway_url, mail_url))
    print(f"journey passed against {gateway_url}")
