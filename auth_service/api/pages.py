"""The few small HTML pages reached from links in emails."""

from __future__ import annotations

from html import escape

__all__ = ["page"]

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} - Murmur</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto}}</style>
</head><body><h1>{title}</h1>{body}</body></html>
"""


def page(title: str, body_html: str) -> str:
    """A minimal page; ``body_html`` must already be safe HTML."""
    return _TEMPLATE.format(title=escape(title), body=body_html)
