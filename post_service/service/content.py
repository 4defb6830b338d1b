"""Rules for user-written text: validation and server-side parsing of #hashtags and @mentions."""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "MAX_CONTENT_CHARS",
    "normalize_tag",
    "parse_hashtags",
    "parse_mentions",
    "validate_content",
]

MAX_CONTENT_CHARS = 500
MAX_TAG_CHARS = 100

# Line breaks and tabs are ordinary in multi-line posts; every other C0/C1 control is refused.
_ALLOWED_CONTROLS = frozenset("\n\r\t")

# A tag or mention starts at a word boundary, so "a#b" and "me@example.com" are neither.
_HASHTAG_RE = re.compile(r"(?<![\w#])#(\w{1,100})")
_MENTION_RE = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{3,30})(?![A-Za-z0-9_])")


def validate_content(value: str) -> str:
    """Trimmed content, or ValueError with a message fit for a 422."""
    for char in value:
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) == "Cc":
            raise ValueError("content must not contain NUL or other control characters")
    trimmed = value.strip()
    if not trimmed:
        raise ValueError("content must not be empty")
    if len(trimmed) > MAX_CONTENT_CHARS:
        raise ValueError(f"content must be at most {MAX_CONTENT_CHARS} characters")
    return trimmed


def normalize_tag(tag: str) -> str:
    """The stored form of a hashtag: no leading '#', lower-cased."""
    return tag.strip().removeprefix("#").lower()


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def parse_hashtags(content: str) -> list[str]:
    """Distinct hashtags, lower-cased, in order of first appearance."""
    return _unique([normalize_tag(m) for m in _HASHTAG_RE.findall(content)])


def parse_mentions(content: str) -> list[str]:
    """Distinct mentioned usernames, lower-cased, in order of first appearance."""
    return _unique([m.lower() for m in _MENTION_RE.findall(content)])
