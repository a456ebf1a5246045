"""instance.rejection and rejected_at: IOCM rejection and soft delete (issue 4)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 08:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("instance", sa.Column("rejection", sa.String(length=16), nullable=True))
    op.add_column("instance", sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # plain ALTER TABLE (SQLite 3.35+): batch mode would copy the table and cascade to location
    op.drop_column("instance", "rejected_at")
    op.drop_column("instance", "rejection")
