"""The Alembic migrations build exactly the schema of post_service.models, and reverse."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from alembic import command

from post_service.migrations import alembic_config, upgrade


async def test_migrations_match_models_and_downgrade(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await make_database("post_migr")
    await asyncio.to_thread(upgrade, url)
    # Raises when autogenerate finds any difference between the models and the database.
    await asyncio.to_thread(command.check, alembic_config(url))
    await asyncio.to_thread(command.downgrade, alembic_config(url), "base")
    await asyncio.to_thread(upgrade, url)
    await asyncio.to_thread(command.check, alembic_config(url))
