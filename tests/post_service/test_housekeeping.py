"""A running post_service forgets old processed-event records and published outbox rows."""

from __future__ import annotations

import asyncio
import time

from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import create_engine, session_factory
from common.events import UserDeleted
from common.outbox import emit, mark_processed
from post_service.app import create_app
from tests.post_service.conftest import make_settings


async def _ids(engine: AsyncEngine, sql: str) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(text(sql))).scalars().all())


async def test_a_running_service_purges_old_processed_events_and_published_rows(
    post_database: str, redis_url: str
) -> None:
    engine = create_engine(post_database)
    sessions = session_factory(engine)
    try:
        async with sessions.begin() as session:
            for event_id in ("old", "fresh"):
                assert await mark_processed(session, event_id, "post")
            published_long_ago = (
                await emit(session, UserDeleted(user_id="u1"), producer="post")
            ).id
            published_now = (await emit(session, UserDeleted(user_id="u2"), producer="post")).id
            pending_old = (await emit(session, UserDeleted(user_id="u3"), producer="post")).id
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE processed_events SET processed_at = now() - interval '8 days'"
                    " WHERE event_id = 'old'"
                )
            )
            await conn.execute(
                text(
                    "UPDATE outbox SET published_at = now() - interval '2 days',"
                    " created_at = now() - interval '2 days' WHERE id = :id"
                ),
                {"id": published_long_ago},
            )
            await conn.execute(
                text("UPDATE outbox SET published_at = now() WHERE id = :id"),
                {"id": published_now},
            )
            # Never published (RabbitMQ unreachable below): kept whatever its age.
            await conn.execute(
                text("UPDATE outbox SET created_at = now() - interval '30 days' WHERE id = :id"),
                {"id": pending_old},
            )

        settings = make_settings(
            post_database,
            redis_url,
            run_workers=True,
            # Nothing listens there: the relay cannot publish, the purge runs regardless.
            amqp_url="amqp://guest:guest@127.0.0.1:9/",
            processed_events_retention_s=7 * 86_400,
            outbox_retention_s=86_400,
            outbox_purge_interval_s=0.2,
        )
        async with LifespanManager(create_app(settings), startup_timeout=60, shutdown_timeout=30):
            deadline = time.monotonic() + 30
            while "old" in await _ids(engine, "SELECT event_id FROM processed_events"):
                assert time.monotonic() < deadline, "old processed events were never purged"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # a second purge meanwhile
            assert await _ids(engine, "SELECT event_id FROM processed_events") == {"fresh"}
            assert await _ids(engine, "SELECT id FROM outbox") == {published_now, pending_old}
    finally:
        await engine.dispose()
