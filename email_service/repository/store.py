"""Redis keys of email_service, all in one place.

- ``{prefix}:sent:{event_id}``: the event's mail went out (TTL ``sent_log_ttl_s``).
- ``{prefix}:sending:{event_id}``: a worker is talking to SMTP for it (TTL ``send_lock_ttl_s``).
- ``{prefix}:deleted:{user_id}``: the account is gone; drop its queued mail.

No address, name or token is ever stored: each event carries what its mail needs.
"""

from __future__ import annotations

import redis.asyncio as redis

__all__ = ["MailStore"]


class MailStore:
    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        sent_ttl_s: int,
        lock_ttl_s: int,
        deleted_ttl_s: int,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._sent_ttl_s = sent_ttl_s
        self._lock_ttl_s = lock_ttl_s
        self._deleted_ttl_s = deleted_ttl_s

    def _key(self, kind: str, ident: str) -> str:
        return f"{self._prefix}:{kind}:{ident}"

    async def was_sent(self, event_id: str) -> bool:
        return bool(await self._redis.exists(self._key("sent", event_id)))

    async def claim(self, event_id: str) -> bool:
        """Take the right to send ``event_id``; False when another worker holds it."""
        return bool(
            await self._redis.set(self._key("sending", event_id), "1", nx=True, ex=self._lock_ttl_s)
        )

    async def release(self, event_id: str) -> None:
        await self._redis.delete(self._key("sending", event_id))

    async def mark_sent(self, event_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("sent", event_id), "1", ex=self._sent_ttl_s)
            pipe.delete(self._key("sending", event_id))
            await pipe.execute()

    async def forget_user(self, user_id: str) -> None:
        await self._redis.set(self._key("deleted", user_id), "1", ex=self._deleted_ttl_s)

    async def is_deleted(self, user_id: str) -> bool:
        return bool(await self._redis.exists(self._key("deleted", user_id)))
