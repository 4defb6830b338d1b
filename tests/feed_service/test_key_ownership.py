"""FeedManager is the only code that builds feed keys or talks to Redis for feeds (issue 13).

Mastodon's FeedManager rule: callers never build a key. Every module of feed_service other
than the key layout (``repository/keys.py``) and ``service/feed_manager.py`` is read here, and
none may call a feed-key function, spell a feed key's prefix, or reach through the manager to
its Redis client.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from feed_service.repository import keys

ROOT = Path(__file__).resolve().parents[2] / "feed_service"
OWNERS = {ROOT / "repository" / "keys.py", ROOT / "service" / "feed_manager.py"}

# Everything of a home feed: the feed and its marker/lock, the follow replicas, the author
# index, the big-author set, and the member format.
FEED_KEY_NAMES = {
    "feed",
    "feed_meta",
    "feed_meta_pattern",
    "feed_lock",
    "following",
    "followers",
    "followers_meta",
    "author_posts",
    "author_posts_meta",
    "BIG_AUTHORS",
    "entry",
    "parse_entry",
}
PREFIXES = tuple(
    make("x").split("{", 1)[0]
    for make in (
        keys.feed,
        keys.feed_meta,
        keys.feed_lock,
        keys.following,
        keys.followers,
        keys.followers_meta,
        keys.author_posts,
        keys.author_posts_meta,
    )
)
MANAGER_NAMES = {"feeds", "_feeds", "feed_manager"}


def violations(source: str) -> list[str]:
    """What one module does with feed keys that only the FeedManager may do."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            base = node.value
            base_name = (
                base.id
                if isinstance(base, ast.Name)
                else base.attr
                if isinstance(base, ast.Attribute)
                else None
            )
            if base_name == "keys" and node.attr in FEED_KEY_NAMES:
                found.append(f"line {node.lineno}: keys.{node.attr}")
            if base_name in MANAGER_NAMES and node.attr == "redis":
                found.append(f"line {node.lineno}: {base_name}.redis")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").endswith("keys"):
            for alias in node.names:
                if alias.name in FEED_KEY_NAMES:
                    found.append(f"line {node.lineno}: imports {alias.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text == keys.BIG_AUTHORS or text.startswith(PREFIXES):
                found.append(f"line {node.lineno}: spells {text!r}")
    return found


def modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if p not in OWNERS)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_feed_manager_builds_feed_keys(path: Path) -> None:
    assert violations(path.read_text()) == []


def test_the_check_finds_each_kind_of_violation() -> None:
    source = (
        "from feed_service.repository.keys import followers_meta\n"
        "async def f(self, keys, user_id):\n"
        "    await self.feeds.redis.set(keys.followers_meta(user_id), '1')\n"
        "    async for k in redis.scan_iter(match='feedmeta:{u:*}'):\n"
        "        pass\n"
        "    return keys.post(user_id)\n"
    )
    found = violations(source)
    assert len(found) == 4, found
    assert any("imports followers_meta" in v for v in found)
    assert any("feeds.redis" in v for v in found)
    assert any("keys.followers_meta" in v for v in found)
    assert any("feedmeta:" in v for v in found)
