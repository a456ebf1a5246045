"""instance.attrs and uid_alias: reallocation of series and instances under new UIDs (issue 4)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 09:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("instance", sa.Column("attrs", _JSON, nullable=True))
    op.create_table(
        "uid_alias",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("old_uid", sa.String(length=64), nullable=False),
        sa.Column("new_uid", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_uid_alias")),
        sa.UniqueConstraint("old_uid", name=op.f("uq_uid_alias_old_uid")),
    )
    op.create_index(op.f("ix_uid_alias_new_uid"), "uid_alias", ["new_uid"])


def downgrade() -> None:
    op.drop_index(op.f("ix_uid_alias_new_uid"), table_name="uid_alias")
    op.drop_table("uid_alias")
    op.drop_column("instance", "attrs")
