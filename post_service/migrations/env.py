"""Alembic environment of post_service (the URL comes from the caller)."""

from common.migrations import run_migrations
from post_service.models import Base

run_migrations(Base.metadata)
