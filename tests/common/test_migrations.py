"""Each PostgreSQL service's Alembic history builds exactly its models' schema, and reverses.

A model changed without a migration fails here: autogenerate (``compare_metadata``) is run
against a real database upgraded to head. The revisions are frozen: literal DDL, importing
nothing from the project, so a later change to ``common/`` or a model cannot rewrite what an
applied revision created.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

import auth_service.migrations
import auth_service.models
import post_service.migrations
import post_service.models
from common.events import CONSUMERS


@dataclass(frozen=True)
class Service:
    name: str
    migrations: ModuleType
    metadata: sa.MetaData
    table: str  # one of its tables, to change in a copy of the models

    def config(self, url: str) -> Config:
        config: Config = self.migrations.alembic_config(url)
        return config

    def upgrade(self, url: str, revision: str = "head") -> None:
        self.migrations.upgrade(url, revision)


SERVICES = [
    Service("auth", auth_service.migrations, auth_service.models.Base.metadata, "users"),
    Service("post", post_service.migrations, post_service.models.Base.metadata, "posts"),
]


async def schema_diff(url: str, metadata: sa.MetaData) -> list[Any]:
    """What autogenerate would put in a new revision for ``metadata`` against ``url``."""
    engine = create_async_engine(url, poolclass=sa.pool.NullPool)

    def compare(connection: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


async def table_names(url: str) -> list[str]:
    engine = create_async_engine(url, poolclass=sa.pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda c: sa.inspect(c).get_table_names())
    finally:
        await engine.dispose()


@pytest.fixture(params=SERVICES, ids=[s.name for s in SERVICES])
def service(request: pytest.FixtureRequest) -> Service:
    chosen: Service = request.param
    return chosen


async def test_models_and_migrations_agree_and_downgrade(
    service: Service, make_database: Callable[[str], Awaitable[str]]
) -> None:
    url = await make_database(f"{service.name}_migr")
    await asyncio.to_thread(service.upgrade, url)
    assert await schema_diff(url, service.metadata) == []
    # The services' own check (``alembic check`` with the env.py options) agrees.
    await asyncio.to_thread(command.check, service.config(url))

    await asyncio.to_thread(command.downgrade, service.config(url), "base")
    assert await table_names(url) == ["alembic_version"]
    await asyncio.to_thread(service.upgrade, url)
    assert await schema_diff(url, service.metadata) == []


async def test_a_model_changed_without_a_migration_is_caught(
    service: Service, make_database: Callable[[str], Awaitable[str]]
) -> None:
    url = await make_database(f"{service.name}_drift")
    await asyncio.to_thread(service.upgrade, url)
    changed = sa.MetaData(naming_convention=service.metadata.naming_convention)
    for table in service.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables[service.table].append_column(sa.Column("added_later", sa.Text()))
    changed.tables[service.table].append_constraint(
        sa.Index(None, changed.tables[service.table].c.added_later)
    )

    diff = await schema_diff(url, changed)

    assert [entry[0] for entry in diff] == ["add_column", "add_index"]
    assert diff[1][1].name == f"ix_{service.table}_added_later"  # the shared convention


# What a revision may import: nothing of the project, whose code moves on.
_FROZEN_IMPORTS = {"__future__", "collections", "alembic", "sqlalchemy"}


def test_revisions_are_frozen(service: Service) -> None:
    versions = Path(service.migrations.__file__).parent / "versions"
    revisions = sorted(versions.glob("*.py"))
    assert revisions
    for path in revisions:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in _FROZEN_IMPORTS, (
                    f"{path.name} imports {module}: a revision must not follow live code"
                )


def test_only_a_consuming_service_keeps_processed_events() -> None:
    consuming = {service for services in CONSUMERS.values() for service in services}
    assert "auth" not in consuming and "post" in consuming
    assert "processed_events" not in auth_service.models.Base.metadata.tables
    assert "processed_events" in post_service.models.Base.metadata.tables
