"""One SQL naming convention with auth_service (common.db.NAMING_CONVENTION): an index on an
expression names its column first, then what is applied to it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER INDEX ix_authors_lower_username RENAME TO ix_authors_username_lower")


def downgrade() -> None:
    op.execute("ALTER INDEX ix_authors_username_lower RENAME TO ix_authors_lower_username")
