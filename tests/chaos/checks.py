"""The consistency check after a chaos run: pure functions of what the load did (`Ledger`) and
what the API shows once the system has settled (`Observation`).

Each check returns `Finding`s (empty: the check passed); `check_all` runs them all, so one run
reports every broken promise at once, each under the check's name.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from tests.chaos.model import ABSENT, PRESENT, Ledger, Register, Request

TOKEN = re.compile(r"\b([pc]-[0-9a-f]{10})\b")
# The queues each consuming service (and the fan-out workers) must always be reading.
CONSUMED_QUEUES = ("feed.events", "email.events", "network.events", "post.events", "feed.fanout")
MAIL_SUBJECTS = {"verification": "verify", "welcome": "welcome"}


def token_of(content: str) -> str | None:
    match = TOKEN.search(content)
    return match.group(1) if match else None


@dataclass(frozen=True)
class PostView:
    """A post as post_service or a home feed shows it."""

    id: str
    author_id: str
    content: str
    created_at: str
    like_count: int
    comment_count: int
    mention_ids: tuple[str, ...] = ()
    liked_by_me: bool = False


@dataclass(frozen=True)
class Mail:
    to: tuple[str, ...]
    subject: str
    message_id: str


@dataclass(frozen=True)
class Queue:
    name: str
    ready: int
    unacked: int
    consumers: int


@dataclass
class Observation:
    """The platform's state, read through its public API (and the broker's and mail catcher's)."""

    users: dict[str, str] = field(default_factory=dict)  # username -> id, for existing accounts
    timelines: dict[str, list[PostView]] = field(default_factory=dict)  # author id -> posts
    likers: dict[str, list[str]] = field(default_factory=dict)  # post id -> user ids
    comments: dict[str, list[str]] = field(default_factory=dict)  # post id -> comment contents
    following: dict[str, list[str]] = field(default_factory=dict)  # user id -> followee ids
    followers: dict[str, list[str]] = field(default_factory=dict)  # user id -> follower ids
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> followers, following
    feeds: dict[str, list[PostView]] = field(default_factory=dict)  # user id -> home feed
    feed_cap: int = 800
    mails: list[Mail] = field(default_factory=list)
    queues: list[Queue] = field(default_factory=list)
    failed_reads: list[str] = field(default_factory=list)  # reads of the checker that failed


@dataclass(frozen=True)
class Finding:
    check: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.detail}"


@dataclass(frozen=True)
class FaultWindow:
    """From the fault's start until the platform was ready again (plus a grace period)."""

    name: str
    start: float
    end: float


Check = Callable[[Ledger, Observation], list[Finding]]


def _mismatch(
    check: str, what: str, register: Register, seen: Hashable, out: list[Finding]
) -> None:
    allowed = register.allowed()
    if seen not in allowed:
        out.append(Finding(check, f"{what}: shows {seen!r}, allowed {sorted(map(str, allowed))}"))


def _duplicates(check: str, what: str, items: Iterable[Hashable], out: list[Finding]) -> None:
    for item, count in Counter(items).items():
        if count > 1:
            out.append(Finding(check, f"{what}: {item} appears {count} times"))


def _posts_by_token(obs: Observation) -> dict[str, list[PostView]]:
    by_token: dict[str, list[PostView]] = defaultdict(list)
    for posts in obs.timelines.values():
        for post in posts:
            token = token_of(post.content)
            if token is not None:
                by_token[token].append(post)
    return by_token


def check_users(ledger: Ledger, obs: Observation) -> list[Finding]:
    name = "acknowledged registrations exist"
    out: list[Finding] = []
    for username, register in ledger.users.items():
        _mismatch(
            name, f"user {username}", register, PRESENT if username in obs.users else ABSENT, out
        )
    return out


def check_posts(ledger: Ledger, obs: Observation) -> list[Finding]:
    name = "acknowledged posts present once, with their last edit"
    out: list[Finding] = []
    by_token = _posts_by_token(obs)
    for token, register in ledger.posts.items():
        copies = by_token.get(token, [])
        if len(copies) > 1:
            out.append(Finding(name, f"post {token} stored {len(copies)} times"))
        _mismatch(name, f"post {token}", register, PRESENT if copies else ABSENT, out)
        if copies:
            _mismatch(
                name, f"content of post {token}", ledger.contents[token], copies[0].content, out
            )
    for token in by_token.keys() - ledger.posts.keys():
        out.append(Finding(name, f"post {token} exists but the load never sent it"))
    return out


def check_likes(ledger: Ledger, obs: Observation) -> list[Finding]:
    name = "acknowledged likes present once"
    out: list[Finding] = []
    by_token = _posts_by_token(obs)
    for (user_id, token), register in ledger.likes.items():
        copies = by_token.get(token)
        if not copies:
            continue  # the post is gone, and its likes with it (checked by check_posts)
        likers = obs.likers.get(copies[0].id, [])
        seen = PRESENT if user_id in likers else ABSENT
        _mismatch(name, f"like of {user_id} on post {token}", register, seen, out)
    for post_id, likers in obs.likers.items():
        _duplicates(name, f"likers of post {post_id}", likers, out)
    return out


def check_comments(ledger: Ledger, obs: Observation) -> list[Finding]:
    name = "acknowledged comments present once"
    out: list[Finding] = []
    by_token = _posts_by_token(obs)
    seen_tokens: dict[str, list[str]] = defaultdict(list)  # comment token -> post ids
    for post_id, contents in obs.comments.items():
        for content in contents:
            token = token_of(content)
            if token is not None:
                seen_tokens[token].append(post_id)
    for token, register in ledger.comments.items():
        post = by_token.get(ledger.comment_posts[token])
        if not post:
            continue  # the post is gone, and its comments with it
        places = seen_tokens.get(token, [])
        if len(places) > 1:
            out.append(Finding(name, f"comment {token} stored {len(places)} times"))
        _mismatch(name, f"comment {token}", register, PRESENT if places else ABSENT, out)
    for token in seen_tokens.keys() - ledger.comments.keys():
        out.append(Finding(name, f"comment {token} exists but the load never sent it"))
    return out


def check_follows(ledger: Ledger, obs: Observation) -> list[Finding]:
    name = "acknowledged follows present once, lists agree"
    out: list[Finding] = []
    for (follower, followee), register in ledger.follows.items():
        seen = PRESENT if followee in obs.following.get(follower, []) else ABSENT
        _mismatch(name, f"{follower} follows {followee}", register, seen, out)
    for user_id, followees in obs.following.items():
        _duplicates(name, f"following of {user_id}", followees, out)
        for followee in followees:
            if followee in obs.followers and user_id not in obs.followers[followee]:
                out.append(Finding(name, f"{user_id} follows {followee} but is not its follower"))
    for user_id, followers in obs.followers.items():
        _duplicates(name, f"followers of {user_id}", followers, out)
        for follower in followers:
            if follower in obs.following and user_id not in obs.following[follower]:
                out.append(Finding(name, f"{follower} is a follower of {user_id} not following it"))
    return out


def check_follow_counts(ledger: Ledger, obs: Observation) -> list[Finding]:
    name = "follower/following counts equal network_service's lists"
    out: list[Finding] = []
    for user_id, (followers, following) in obs.counts.items():
        expected = (len(obs.followers.get(user_id, [])), len(obs.following.get(user_id, [])))
        if (followers, following) != expected:
            out.append(
                Finding(name, f"{user_id}: counts {(followers, following)}, lists {expected}")
            )
    return out


def check_post_counts(ledger: Ledger, obs: Observation) -> list[Finding]:
    name = "post like_count/comment_count equal the likes and comments"
    out: list[Finding] = []
    for posts in obs.timelines.values():
        for post in posts:
            likes, comments = len(obs.likers.get(post.id, [])), len(obs.comments.get(post.id, []))
            if (post.like_count, post.comment_count) != (likes, comments):
                out.append(
                    Finding(
                        name,
                        f"post {post.id}: like_count {post.like_count} for {likes} likes, "
                        f"comment_count {post.comment_count} for {comments} comments",
                    )
                )
    return out


def check_feeds(ledger: Ledger, obs: Observation) -> list[Finding]:
    """Each home feed is its owner's posts, those of everyone followed, and those mentioning
    the owner (api.md), newest `feed_cap` of them, each once."""
    name = "home feed equals own, followed and mentioning posts"
    out: list[Finding] = []
    all_posts = [post for posts in obs.timelines.values() for post in posts]
    for user_id, feed in obs.feeds.items():
        sources = {user_id, *obs.following.get(user_id, [])}
        expected = {p.id for p in all_posts if p.author_id in sources or user_id in p.mention_ids}
        shown = [p.id for p in feed]
        _duplicates(name, f"feed of {user_id}", shown, out)
        missing, extra = expected - set(shown), set(shown) - expected
        if len(expected) > obs.feed_cap:
            missing = set() if len(shown) == obs.feed_cap else missing
        if missing:
            mentions = {p.id for p in all_posts if user_id in p.mention_ids} & missing
            detail = f" ({len(mentions)} of them mention the reader)" if mentions else ""
            out.append(
                Finding(
                    name,
                    f"feed of {user_id} lacks {len(missing)} posts{detail}: {sorted(missing)[:5]}",
                )
            )
        if extra:
            known = {p.id: p.author_id for p in all_posts}
            authors = Counter(known.get(p, "a deleted post") for p in extra)
            out.append(
                Finding(
                    name,
                    f"feed of {user_id} has {len(extra)} posts it should not, by author (not "
                    f"followed, or deleted): {dict(authors)}",
                )
            )
    return out


def check_feed_entries(ledger: Ledger, obs: Observation) -> list[Finding]:
    """What a feed shows of a post (content, counts, liked_by_me) is what post_service says."""
    out: list[Finding] = []
    truth = {post.id: post for posts in obs.timelines.values() for post in posts}
    for user_id, feed in obs.feeds.items():
        for entry in feed:
            source = truth.get(entry.id)
            if source is None:
                continue  # a post that should not be there (check_feeds)
            where = f"post {entry.id} in the feed of {user_id}"
            if entry.content != source.content:
                out.append(
                    Finding("feed shows the post's current content", f"{where}: stale content")
                )
            if entry.like_count != source.like_count:
                out.append(
                    Finding(
                        "feed like_count equals post_service's",
                        f"{where}: {entry.like_count}, post_service {source.like_count}",
                    )
                )
            if entry.comment_count != source.comment_count:
                out.append(
                    Finding(
                        "feed comment_count equals post_service's",
                        f"{where}: {entry.comment_count}, post_service {source.comment_count}",
                    )
                )
            liked = user_id in obs.likers.get(entry.id, [])
            if entry.liked_by_me != liked:
                out.append(
                    Finding(
                        "feed liked_by_me equals the likes",
                        f"{where}: liked_by_me {entry.liked_by_me}, liked {liked}",
                    )
                )
    return out


def check_mail(ledger: Ledger, obs: Observation) -> list[Finding]:
    """One verification and one welcome mail per account, none for an account that does not
    exist, and no Message-ID twice."""
    name = "one verification and one welcome mail per account"
    out: list[Finding] = []
    for username, address in ledger.emails.items():
        wanted = 1 if username in obs.users else 0
        mails = [m for m in obs.mails if address in m.to]
        for kind, word in MAIL_SUBJECTS.items():
            count = sum(1 for m in mails if word in m.subject.lower())
            if count != wanted:
                out.append(Finding(name, f"{username}: {count} {kind} mails, expected {wanted}"))
    _duplicates(name, "Message-ID", [m.message_id for m in obs.mails], out)
    return out


def check_queues(ledger: Ledger, obs: Observation) -> list[Finding]:
    out: list[Finding] = []
    for queue in obs.queues:
        if queue.ready or queue.unacked:
            check = (
                "nothing dead-lettered"
                if queue.name.endswith(".dead")
                else "no message left in a queue or unacked"
            )
            out.append(
                Finding(check, f"{queue.name}: {queue.ready} ready, {queue.unacked} unacked")
            )
    by_name = {queue.name: queue for queue in obs.queues}
    for name in CONSUMED_QUEUES:
        queue = by_name.get(name)
        if queue is None or queue.consumers < 1:
            out.append(Finding("every queue has its consumers", f"{name}: no consumer"))
    return out


def check_reads(ledger: Ledger, obs: Observation) -> list[Finding]:
    return [Finding("reads answer once the faults are over", r) for r in obs.failed_reads]


CHECKS: tuple[Check, ...] = (
    check_users,
    check_posts,
    check_likes,
    check_comments,
    check_follows,
    check_follow_counts,
    check_post_counts,
    check_feeds,
    check_feed_entries,
    check_mail,
    check_queues,
    check_reads,
)


def check_all(ledger: Ledger, obs: Observation) -> list[Finding]:
    return [finding for check in CHECKS for finding in check(ledger, obs)]


def check_no_500(requests: Iterable[Request]) -> list[Finding]:
    """A dependency down gives 503, never 500 (api.md), during a fault too."""
    errors = Counter(f"{r.method} {r.route}" for r in requests if r.status == 500)
    return [
        Finding("a fault answers 503, never 500", f"{count} x 500 on {route}")
        for route, count in sorted(errors.items())
    ]


def check_availability(requests: Iterable[Request], windows: list[FaultWindow]) -> list[Finding]:
    """No request fails (5xx or no answer) while no fault is active: a dependency back means
    the service is back, not minutes later. Grouped by the fault before, route and status."""
    name = "no request fails outside a fault"
    failures: Counter[tuple[str, str, str]] = Counter()
    for request in requests:
        if request.status is not None and request.status < 500:
            continue
        if any(w.start <= request.ended and request.started <= w.end for w in windows):
            continue
        before = [w.name for w in windows if w.end < request.started]
        status = str(request.status) if request.status is not None else request.error or "no answer"
        failures[
            (
                before[-1] if before else "(before any fault)",
                f"{request.method} {request.route}",
                status,
            )
        ] += 1
    return [
        Finding(name, f"after {fault}: {count} x {status} on {route}")
        for (fault, route, status), count in sorted(failures.items())
    ]
