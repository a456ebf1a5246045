"""qa_operation and qa_operation_object: the corrections journal (issue 4)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "qa_operation",
        sa.Column("pk", _KEY, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), server_default="local", nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=200), nullable=False),
        sa.Column("actor_address", sa.String(length=100), server_default="", nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("params", _JSON, nullable=False),
        sa.Column("edits", _JSON, nullable=False),
        sa.Column("summary", _JSON, nullable=False),
        sa.Column("undo_of_pk", _KEY, nullable=True),
        sa.Column("undone_by_pk", _KEY, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["undo_of_pk"], ["qa_operation.pk"], name=op.f("fk_qa_operation_undo_of_pk_qa_operation")
        ),
        sa.ForeignKeyConstraint(
            ["undone_by_pk"], ["qa_operation.pk"], name=op.f("fk_qa_operation_undone_by_pk_qa_operation")
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_qa_operation")),
    )
    op.create_index(op.f("ix_qa_operation_created_at"), "qa_operation", ["created_at"], unique=False)
    op.create_table(
        "qa_operation_object",
        sa.Column("pk", _KEY, autoincrement=True, nullable=False),
        sa.Column("operation_pk", _KEY, nullable=False),
        sa.Column("object_key", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["operation_pk"],
            ["qa_operation.pk"],
            name=op.f("fk_qa_operation_object_operation_pk_qa_operation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_qa_operation_object")),
    )
    op.create_index(
        op.f("ix_qa_operation_object_object_key_operation_pk"),
        "qa_operation_object",
        ["object_key", "operation_pk"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_qa_operation_object_object_key_operation_pk"), table_name="qa_operation_object")
    op.drop_table("qa_operation_object")
    op.drop_index(op.f("ix_qa_operation_created_at"), table_name="qa_operation")
    op.drop_table("qa_operation")
