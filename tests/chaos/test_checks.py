"""The chaos checker is pure logic: a consistent made-up observation passes, and each broken
promise, planted on purpose, is flagged under its own check (so no check can only pass)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.chaos.checks import (
    CONSUMED_QUEUES,
    FaultWindow,
    Mail,
    Observation,
    PostView,
    Queue,
    check_all,
    check_availability,
    check_no_500,
)
from tests.chaos.model import ABSENT, PRESENT, Ledger, Outcome, Register, Request

A, B = "id-a", "id-b"
P1, P2, P3 = "p-000000000a", "p-000000000b", "p-000000000c"
C1 = "c-000000000a"


def _ledger() -> Ledger:
    """A and B registered; A posted P1 (edited) and P2 (deleted); B follows A, likes and
    comments on P1; B's post P3 was sent without an answer (unknown) and was applied."""
    ledger = Ledger()
    ledger.registered("alice", "alice@example.com", Outcome.ACKED, A)
    ledger.registered("bob", "bob@example.com", Outcome.ACKED, B)
    ledger.registered("carol", "carol@example.com", Outcome.UNKNOWN, None)
    ledger.posted(P1, A, f"{P1} hello", Outcome.ACKED)
    ledger.edited(P1, f"{P1} hello (edit 1)", Outcome.ACKED)
    ledger.posted(P2, A, f"{P2} bye", Outcome.ACKED)
    ledger.deleted_post(P2, Outcome.ACKED)
    ledger.posted(P3, B, f"{P3} maybe @alice", Outcome.UNKNOWN)
    ledger.followed(B, A, True, Outcome.ACKED)
    ledger.followed(A, B, True, Outcome.REJECTED)  # e.g. 404: had no effect
    ledger.liked(B, P1, True, Outcome.ACKED)
    ledger.commented(C1, P1, Outcome.ACKED)
    return ledger


def _observation() -> Observation:
    p1 = PostView("1", A, f"{P1} hello (edit 1)", "t1", like_count=1, comment_count=1)
    p3 = PostView("3", B, f"{P3} maybe @alice", "t3", 0, 0, mention_ids=(A,))
    return Observation(
        users={"alice": A, "bob": B},
        timelines={A: [p1], B: [p3]},
        likers={"1": [B], "3": []},
        comments={"1": [f"{C1} nice"], "3": []},
        following={A: [], B: [A]},
        followers={A: [B], B: []},
        counts={A: (1, 0), B: (0, 1)},
        feeds={A: [p1, p3], B: [replace(p1, liked_by_me=True), p3]},
        mails=[
            Mail(("alice@example.com",), "Verify your email address", "<1@m>"),
            Mail(("alice@example.com",), "Welcome to Murmur", "<2@m>"),
            Mail(("bob@example.com",), "Verify your email address", "<3@m>"),
            Mail(("bob@example.com",), "Welcome to Murmur", "<4@m>"),
        ],
        queues=[Queue(name, 0, 0, 1) for name in CONSUMED_QUEUES]
        + [Queue("feed.events.dead", 0, 0, 0)],
    )


def test_a_consistent_observation_passes() -> None:
    assert check_all(_ledger(), _observation()) == []


def test_register_allows_the_last_acknowledged_value_or_a_later_unknown_one() -> None:
    register = Register()
    register.write(PRESENT, Outcome.ACKED)
    assert register.allowed() == {PRESENT}
    register.write(ABSENT, Outcome.UNKNOWN)
    assert register.allowed() == {PRESENT, ABSENT}
    register.write(PRESENT, Outcome.ACKED)
    assert register.allowed() == {PRESENT}
    register.write(ABSENT, Outcome.REJECTED)
    assert register.allowed() == {PRESENT}


def _drop_post(o: Observation) -> None:
    o.timelines[A] = []


def _post_twice(o: Observation) -> None:
    o.timelines[A].append(replace(o.timelines[A][0], id="1bis"))


def _lose_edit(o: Observation) -> None:
    o.timelines[A][0] = replace(o.timelines[A][0], content=f"{P1} hello")


def _revive_deleted(o: Observation) -> None:
    o.timelines[A].append(PostView("2", A, f"{P2} bye", "t2", 0, 0))


def _lose_like(o: Observation) -> None:
    o.likers["1"] = []


def _like_twice(o: Observation) -> None:
    o.likers["1"] = [B, B]


def _lose_comment(o: Observation) -> None:
    o.comments["1"] = []


def _comment_twice(o: Observation) -> None:
    o.comments["1"] = [f"{C1} nice", f"{C1} nice"]


def _lose_follow(o: Observation) -> None:
    o.following[B] = []


def _one_sided_follow(o: Observation) -> None:
    o.followers[A] = []


def _wrong_follow_count(o: Observation) -> None:
    o.counts[A] = (2, 0)


def _wrong_post_count(o: Observation) -> None:
    o.timelines[A][0] = replace(o.timelines[A][0], like_count=2)


def _feed_lacks_followed_post(o: Observation) -> None:
    o.feeds[B] = [o.feeds[B][1]]


def _feed_lacks_mention(o: Observation) -> None:
    o.feeds[A] = [o.feeds[A][0]]


def _feed_shows_twice(o: Observation) -> None:
    o.feeds[A].append(o.feeds[A][0])


def _feed_shows_unfollowed(o: Observation) -> None:
    o.feeds[A].append(PostView("9", B, "p-0000000009 other", "t9", 0, 0))


def _feed_overcounts_likes(o: Observation) -> None:
    o.feeds[A][0] = replace(o.feeds[A][0], like_count=2)


def _feed_stale_comments(o: Observation) -> None:
    o.feeds[A][0] = replace(o.feeds[A][0], comment_count=0)


def _feed_stale_content(o: Observation) -> None:
    o.feeds[A][0] = replace(o.feeds[A][0], content=f"{P1} hello")


def _feed_forgets_liked(o: Observation) -> None:
    o.feeds[B][0] = replace(o.feeds[B][0], liked_by_me=False)


def _mail_twice(o: Observation) -> None:
    o.mails.append(Mail(("bob@example.com",), "Welcome to Murmur", "<4@m>"))


def _mail_missing(o: Observation) -> None:
    o.mails = o.mails[1:]


def _mail_for_nobody(o: Observation) -> None:
    o.mails.append(Mail(("carol@example.com",), "Welcome to Murmur", "<5@m>"))


def _lose_user(o: Observation) -> None:
    del o.users["bob"]


def _message_left(o: Observation) -> None:
    o.queues[0] = replace(o.queues[0], ready=3)


def _message_unacked(o: Observation) -> None:
    o.queues[0] = replace(o.queues[0], unacked=1)


def _dead_letter(o: Observation) -> None:
    o.queues[-1] = replace(o.queues[-1], ready=1)


def _fanout_without_consumer(o: Observation) -> None:
    o.queues = [replace(q, consumers=0) if q.name == "feed.fanout" else q for q in o.queues]


def _read_failed(o: Observation) -> None:
    o.failed_reads.append("GET /api/v1/me/feed: 503")


BREAKAGES: list[tuple[Callable[[Observation], None], str]] = [
    (_drop_post, "acknowledged posts present once, with their last edit"),
    (_post_twice, "acknowledged posts present once, with their last edit"),
    (_lose_edit, "acknowledged posts present once, with their last edit"),
    (_revive_deleted, "acknowledged posts present once, with their last edit"),
    (_lose_like, "acknowledged likes present once"),
    (_like_twice, "acknowledged likes present once"),
    (_lose_comment, "acknowledged comments present once"),
    (_comment_twice, "acknowledged comments present once"),
    (_lose_follow, "acknowledged follows present once, lists agree"),
    (_one_sided_follow, "acknowledged follows present once, lists agree"),
    (_wrong_follow_count, "follower/following counts equal network_service's lists"),
    (_wrong_post_count, "post like_count/comment_count equal the likes and comments"),
    (_feed_lacks_followed_post, "home feed equals own, followed and mentioning posts"),
    (_feed_lacks_mention, "home feed equals own, followed and mentioning posts"),
    (_feed_shows_twice, "home feed equals own, followed and mentioning posts"),
    (_feed_shows_unfollowed, "home feed equals own, followed and mentioning posts"),
    (_feed_overcounts_likes, "feed like_count equals post_service's"),
    (_feed_stale_comments, "feed comment_count equals post_service's"),
    (_feed_stale_content, "feed shows the post's current content"),
    (_feed_forgets_liked, "feed liked_by_me equals the likes"),
    (_mail_twice, "one verification and one welcome mail per account"),
    (_mail_missing, "one verification and one welcome mail per account"),
    (_mail_for_nobody, "one verification and one welcome mail per account"),
    (_lose_user, "acknowledged registrations exist"),
    (_message_left, "no message left in a queue or unacked"),
    (_message_unacked, "no message left in a queue or unacked"),
    (_dead_letter, "nothing dead-lettered"),
    (_fanout_without_consumer, "every queue has its consumers"),
    (_read_failed, "reads answer once the faults are over"),
]


@pytest.mark.parametrize(("breakage", "check"), BREAKAGES, ids=[b.__name__ for b, _ in BREAKAGES])
def test_each_broken_promise_is_flagged(
    breakage: Callable[[Observation], None], check: str
) -> None:
    observation = copy.deepcopy(_observation())
    breakage(observation)
    assert check in {finding.check for finding in check_all(_ledger(), observation)}


def test_an_unknown_write_may_be_applied_or_not() -> None:
    observation = _observation()
    observation.timelines[B] = []  # P3 (unknown) not applied: allowed
    observation.feeds = {A: observation.feeds[A][:1], B: observation.feeds[B][:1]}
    observation.likers.pop("3")
    observation.comments.pop("3")
    assert check_all(_ledger(), observation) == []


def test_failures_count_only_outside_fault_windows() -> None:
    windows = [FaultWindow("restart redis", 10.0, 20.0)]
    requests = [
        Request("GET", "/api/v1/me/feed", 12.0, 12.5, 503),  # during the fault: allowed
        Request("GET", "/api/v1/me/feed", 19.5, 21.0, None, "ReadTimeout"),  # overlaps: allowed
        Request("GET", "/api/v1/me/feed", 25.0, 25.1, 200),
        Request("GET", "/api/v1/me/feed", 30.0, 30.1, 503),
        Request("GET", "/api/v1/me/feed", 31.0, 31.1, 503),
        Request("POST", "/api/v1/posts", 5.0, 5.1, None, "ConnectError"),
    ]
    assert [str(f) for f in check_availability(requests, windows)] == [
        "[no request fails outside a fault] after (before any fault): "
        "1 x ConnectError on POST /api/v1/posts",
        "[no request fails outside a fault] after restart redis: 2 x 503 on GET /api/v1/me/feed",
    ]


def test_a_500_is_flagged_even_during_a_fault() -> None:
    requests = [
        Request("PUT", "/api/v1/posts/{id}/like", 12.0, 12.5, 500),
        Request("PUT", "/api/v1/posts/{id}/like", 13.0, 13.5, 503),
    ]
    assert [str(f) for f in check_no_500(requests)] == [
        "[a fault answers 503, never 500] 1 x 500 on PUT /api/v1/posts/{id}/like"
    ]
