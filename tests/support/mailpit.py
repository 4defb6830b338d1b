"""Read the development inbox through Mailpit's API (https://mailpit.axllent.org/docs/api-v1/)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

# Mailpit answers a search with at most this many summaries, newest first.
PAGE = 200


@dataclass(frozen=True)
class Mail:
    """One message as Mailpit shows it: decoded bodies and every header."""

    id: str
    subject: str
    to: list[str]
    text: str
    html: str
    headers: dict[str, list[str]]

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case: Mailpit canonicalises `Message-Id`)."""
        for key, values in self.headers.items():
            if key.lower() == name.lower() and values:
                return values[0]
        return None


class Mailpit:
    """A small async client; each call opens its own connection (tests run on many loops)."""

    def __init__(self, api_url: str, *, timeout: float = 10.0) -> None:
        self.api_url = api_url
        self.timeout = timeout

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, timeout=self.timeout)

    async def messages(self) -> list[dict[str, Any]]:
        """Summaries of the newest messages (ID, MessageID, From, To, Subject, ...)."""
        async with self._client() as client:
            response = await client.get("/api/v1/messages", params={"limit": PAGE})
        response.raise_for_status()
        return list(response.json()["messages"])

    async def summaries_to(self, address: str) -> list[dict[str, Any]]:
        """Summaries of the messages to exactly `address` (Mailpit's `to:` matches substrings)."""
        async with self._client() as client:
            response = await client.get(
                "/api/v1/search", params={"query": f'to:"{address}"', "limit": PAGE}
            )
        response.raise_for_status()
        wanted = address.lower()
        return [
            item
            for item in response.json()["messages"]
            if any(to["Address"].lower() == wanted for to in item["To"] or [])
        ]

    async def message(self, message_id: str) -> Mail:
        async with self._client() as client:
            body = await client.get(f"/api/v1/message/{message_id}")
            body.raise_for_status()
            headers = await client.get(f"/api/v1/message/{message_id}/headers")
            headers.raise_for_status()
        data = body.json()
        return Mail(
            id=data["ID"],
            subject=data["Subject"],
            to=[to["Address"] for to in data["To"] or []],
            text=data["Text"],
            html=data["HTML"],
            headers=headers.json(),
        )

    async def mails_to(self, address: str, *, subject: str | None = None) -> list[Mail]:
        """Every message to `address` (with that exact subject, if given), newest first."""
        return [
            await self.message(item["ID"])
            for item in await self.summaries_to(address)
            if subject is None or item["Subject"] == subject
        ]

    async def wait_for(
        self,
        address: str,
        *,
        count: int = 1,
        subject: str | None = None,
        timeout: float = 30.0,
    ) -> list[Mail]:
        """At least `count` messages to `address` once they have arrived; AssertionError if not."""
        deadline = time.monotonic() + timeout
        while True:
            summaries = [
                item
                for item in await self.summaries_to(address)
                if subject is None or item["Subject"] == subject
            ]
            if len(summaries) >= count:
                return [await self.message(item["ID"]) for item in summaries]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{count} mail(s) to {address} ({subject}) did not arrive in {timeout:.0f}s"
                )
            await asyncio.sleep(0.1)

    async def clear(self) -> None:
        """Delete every message."""
        async with self._client() as client:
            response = await client.delete("/api/v1/messages")
        response.raise_for_status()
