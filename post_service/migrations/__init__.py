"""Alembic migrations of post_service; :func:`upgrade` runs them programmatically."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["alembic_config", "upgrade"]

_HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.set_main_option(
        "file_template",
        "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s",
    )
    # Passed as an attribute, not an ini option: ini interpolation would mangle '%' in passwords.
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the schema (sync; call it with ``asyncio.to_thread`` from async code)."""
    command.upgrade(alembic_config(database_url), revision)
