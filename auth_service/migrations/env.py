"""Alembic environment of auth_service (the URL comes from the caller)."""

from auth_service.models import Base
from common.migrations import run_migrations

run_migrations(Base.metadata)
