"""The framework limit: a bare FastAPI endpoint with a feed-sized JSON answer, nothing behind it.

Run as ``python -m uvicorn bench.bare_app:app`` (one process, as each Murmur service runs).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

__all__ = ["app"]

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

# Ten posts of the public shape: the size of the home-feed page the workload reads.
_PAGE: dict[str, Any] = {
    "items": [
        {
            "id": f"0190000000000000000000000000{n:04d}",
            "author": {
                "id": "01900000000000000000000000000001",
                "username": "u",
                "display_name": "U",
            },
            "content": "x" * 80,
            "created_at": "2026-01-01T00:00:00.000Z",
            "edited_at": None,
            "reply_to_id": None,
            "hashtags": [],
            "mentions": [],
            "like_count": 0,
            "comment_count": 0,
            "liked_by_me": False,
        }
        for n in range(10)
    ],
    "next_cursor": None,
}


@app.get("/feed")
async def feed() -> dict[str, Any]:
    return _PAGE
