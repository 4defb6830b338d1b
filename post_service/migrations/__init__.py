"""Alembic migrations of post_service, runnable from code: ``upgrade(database_url)``."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from common import migrations

__all__ = ["alembic_config", "upgrade"]

_HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    return migrations.alembic_config(_HERE, database_url)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to ``revision``; sync, so async code calls it in a thread."""
    migrations.upgrade(_HERE, database_url, revision)
