"""Clients of the sources of truth: post_service and network_service internal read APIs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from common.time import to_ms

__all__ = ["NetworkSource", "PostSource", "RecentPost", "SourceNotFound", "internal_client"]

RecentPost = tuple[str, str, int]
"""(post_id, author_id, created_at ms)."""

_MAX_PER_AUTHOR = 200
_AUTHORS_PER_CALL = 100


def internal_client(
    base_url: str, *, timeout_s: float, headers: Mapping[str, str] | None = None
) -> httpx.AsyncClient:
    """A keep-alive client for an internal read API.

    No cap on connections, on purpose: httpcore leaks a pool slot when a request that is
    waiting for a connection is cancelled or times out (encode/httpcore#1093, open), which
    happens to reads whose client hung up during an overload. With a capped pool the leaked
    slots add up until every call fails with PoolTimeout for good; without a cap nothing
    waits for a slot, so nothing leaks. Concurrency stays bounded by the requests in flight.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        headers=dict(headers or {}),  # the internal service token
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
    )


class SourceNotFound(LookupError):
    """The owner says the entity does not exist (e.g. a deleted account)."""


def _parse_time(value: str) -> int:
    return to_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))


class PostSource:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def batch(self, ids: Sequence[str], viewer_id: str | None) -> list[dict[str, Any]]:
        """Public ``Post`` objects for ``ids``; deleted or unknown ids are omitted."""
        if not ids:
            return []
        response = await self._http.post(
            "/internal/v1/posts/batch", json={"ids": list(ids), "viewer_id": viewer_id}
        )
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def recent(
        self,
        author_ids: Sequence[str],
        limit_per_author: int,
        *,
        deadline_s: float | None = None,
    ) -> list[RecentPost]:
        """Newest posts of each author (chunked to keep requests small)."""
        result: list[RecentPost] = []
        limit = max(1, min(limit_per_author, _MAX_PER_AUTHOR))
        ids = list(dict.fromkeys(author_ids))
        for start in range(0, len(ids), _AUTHORS_PER_CALL):
            chunk = ids[start : start + _AUTHORS_PER_CALL]
            kwargs: dict[str, Any] = {} if deadline_s is None else {"timeout": deadline_s}
            response = await self._http.post(
                "/internal/v1/posts/recent",
                json={"author_ids": chunk, "limit_per_author": limit, "before": None},
                **kwargs,
            )
            response.raise_for_status()
            for item in response.json()["items"]:
                result.append(
                    (str(item["id"]), str(item["author_id"]), _parse_time(item["created_at"]))
                )
        return result

    async def mentioning(self, user_id: str, limit: int) -> list[RecentPost]:
        """The newest posts that mention ``user_id`` (a rebuild's mention entries)."""
        response = await self._http.post(
            "/internal/v1/posts/mentioning", json={"user_id": user_id, "limit": limit}
        )
        response.raise_for_status()
        return [
            (str(i["id"]), str(i["author_id"]), _parse_time(i["created_at"]))
            for i in response.json()["items"]
        ]


class NetworkSource:
    def __init__(self, http: httpx.AsyncClient, *, page_size: int = 10_000) -> None:
        self._http = http
        self._page_size = page_size

    async def followees(self, user_id: str) -> list[str]:
        response = await self._http.get(f"/internal/v1/users/{user_id}/followees")
        if response.status_code == 404:
            raise SourceNotFound(user_id)
        response.raise_for_status()
        return [str(i) for i in response.json()["items"]]

    async def followers(self, user_id: str) -> list[str]:
        result: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": self._page_size}
            if cursor is not None:
                params["cursor"] = cursor
            response = await self._http.get(
                f"/internal/v1/users/{user_id}/followers", params=params
            )
            if response.status_code == 404:
                raise SourceNotFound(user_id)
            response.raise_for_status()
            body = response.json()
            result.extend(str(i) for i in body["items"])
            cursor = body.get("next_cursor")
            if not cursor:
                return result
