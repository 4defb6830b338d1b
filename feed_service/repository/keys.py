"""Every Redis key feed_service uses, in one place (see docs/feed.md).

Keys that one command or script touches together share a hash tag (``{u:<id>}`` per user,
``{p:<id>}`` per post), so the layout works unchanged on a Redis Cluster.
"""

from __future__ import annotations

__all__ = [
    "BIG_AUTHORS",
    "DELETED_USERS",
    "author_posts",
    "author_posts_meta",
    "author_posts_meta_pattern",
    "author_posts_pattern",
    "entry",
    "feed",
    "feed_lock",
    "feed_meta",
    "feed_meta_pattern",
    "followers",
    "followers_meta",
    "following",
    "liked",
    "liked_meta",
    "notif_dedupe",
    "notif_read",
    "notifications",
    "parse_entry",
    "post",
    "post_comments",
    "post_likes",
    "tombstone",
    "user",
    "user_tombstone",
]


def _u(user_id: str) -> str:
    return "{u:" + user_id + "}"


def _p(post_id: str) -> str:
    return "{p:" + post_id + "}"


# --- per reader (slot of {u:<reader>}) ---
def feed(user_id: str) -> str:
    """ZSET home feed: member ``<post_id>:<author_id>``, score created_at ms."""
    return f"feed:{_u(user_id)}"


def feed_meta(user_id: str) -> str:
    """HASH marker: exists = feed built (possibly empty); ``last_read``; PTTL = idle time."""
    return f"feedmeta:{_u(user_id)}"


def feed_meta_pattern() -> tuple[str, str]:
    """(prefix, suffix) around the user id in every ``feed_meta`` key, for SCAN."""
    prefix, _, suffix = feed_meta("\0").partition("\0")
    return prefix, suffix


def feed_lock(user_id: str) -> str:
    """Single-flight lock for rebuilding a missing feed."""
    return f"feedlock:{_u(user_id)}"


def following(user_id: str) -> str:
    """SET of followee ids; complete whenever the feed marker exists (rebuilt with the feed)."""
    return f"following:{_u(user_id)}"


def liked(user_id: str) -> str:
    """SET of post ids the user liked (from post.liked/unliked)."""
    return f"liked:{_u(user_id)}"


def liked_meta(user_id: str) -> str:
    """Marker: the liked set is complete (tracked since user.registered)."""
    return f"likedmeta:{_u(user_id)}"


def notifications(user_id: str) -> str:
    """STREAM of notifications, MAXLEN ~ cap; stream ids are notification and SSE ids."""
    return f"notif:{_u(user_id)}"


def notif_read(user_id: str) -> str:
    """STRING: the newest stream id marked read."""
    return f"notifread:{_u(user_id)}"


def notif_ref(user_id: str, ref: str) -> str:
    """STRING: the stream id of the notification ``ref`` names (``like:<post>:<actor>``,
    ``comment:<comment id>``), so an unlike or a comment deletion can take it back."""
    return f"notifref:{_u(user_id)}:{ref}"


def notif_dedupe(user_id: str, event_id: str) -> str:
    """Claim so a redelivered event notifies once."""
    return f"notifseen:{_u(user_id)}:{event_id}"


# --- per author (slot of {u:<author>}) ---
def followers(user_id: str) -> str:
    """SET of follower ids (replica of network_service, kept by follow events)."""
    return f"followers:{_u(user_id)}"


def followers_meta(user_id: str) -> str:
    """Marker: the follower set is complete."""
    return f"followersmeta:{_u(user_id)}"


def author_posts(user_id: str) -> str:
    """ZSET of the author's recent posts (same members/scores as feeds): follow merge, hybrid."""
    return f"posts:{_u(user_id)}"


def author_posts_pattern() -> tuple[str, str]:
    """(prefix, suffix) around the user id in every ``author_posts`` key (built in Lua)."""
    prefix, _, suffix = author_posts("\0").partition("\0")
    return prefix, suffix


def author_posts_meta_pattern() -> tuple[str, str]:
    """(prefix, suffix) around the user id in every ``author_posts_meta`` key."""
    prefix, _, suffix = author_posts_meta("\0").partition("\0")
    return prefix, suffix


def author_posts_meta(user_id: str) -> str:
    """Marker: the author's recent-post index is complete."""
    return f"postsmeta:{_u(user_id)}"


def user(user_id: str) -> str:
    """HASH user replica: username, display_name."""
    return f"user:{_u(user_id)}"


def user_tombstone(user_id: str) -> str:
    """Deleted account marker (TTL): its entries are dropped wherever they are met."""
    return f"usertomb:{_u(user_id)}"


# --- per post (slot of {p:<post>}) ---
def post(post_id: str) -> str:
    """HASH post cache: author_id, content, created_at, edited_at, counts, ..."""
    return f"post:{_p(post_id)}"


def post_pending_edit(post_id: str) -> str:
    """HASH the newest edit seen (content, edited_at), kept even before the post is cached."""
    return f"edit:post:{_p(post_id)}"


def post_likes(post_id: str) -> str:
    """SET of likers seen in events: makes like counting idempotent."""
    return f"likes:{_p(post_id)}"


def post_comments(post_id: str) -> str:
    """SET of comment ids seen in events: makes comment counting idempotent."""
    return f"comments:{_p(post_id)}"


def tombstone(post_id: str) -> str:
    """Deleted post marker (TTL): a late post.created cannot bring it back."""
    return f"tomb:{_p(post_id)}"


# --- global ---
BIG_AUTHORS = "bigauthors"
"""SET of authors above the hybrid threshold: not fanned out, merged at read time."""

DELETED_USERS = "deletedusers"
"""ZSET user id -> deletion time (epoch s), pruned past deny_list_keep_s: the token deny-list."""


def entry(post_id: str, author_id: str) -> str:
    """A feed member: the author stays recoverable without reading the post."""
    return f"{post_id}:{author_id}"


def parse_entry(member: str) -> tuple[str, str]:
    post_id, _, author_id = member.partition(":")
    return post_id, author_id
