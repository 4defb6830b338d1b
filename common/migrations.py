"""Alembic wiring shared by the PostgreSQL services: config from code, async env, upgrade."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, MetaData, pool
from sqlalchemy.ext.asyncio import create_async_engine

__all__ = ["alembic_config", "run_migrations", "upgrade"]


def alembic_config(script_location: Path, database_url: str) -> Config:
    """A config for the migrations in ``script_location`` against ``database_url``."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    # Files named by date and slug, so the history reads in order in a directory listing.
    config.set_main_option(
        "file_template",
        "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s",
    )
    # An attribute, not an ini option: ini interpolation would mangle '%' in passwords.
    config.attributes["database_url"] = database_url
    return config


def upgrade(script_location: Path, database_url: str, revision: str = "head") -> None:
    """Bring the database to ``revision``; sync, so async code calls it in a thread."""
    command.upgrade(alembic_config(script_location, database_url), revision)


def run_migrations(metadata: MetaData) -> None:
    """The body of a service's ``env.py``: offline SQL or online over asyncpg."""
    url = str(context.config.attributes["database_url"])
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    async def online() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool, hide_parameters=True)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(online())
