"""migration_item: the studies of a migration, with the counts there and here; storage_commitment:
the commitments asked of forwarding destinations; derived_instance: lossy copies made for
routing (issue 5)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 12:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "migration_item",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("job_pk", _KEY, nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("study_date", sa.String(length=16), server_default="", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("there_series", sa.Integer(), nullable=True),
        sa.Column("there_instances", sa.Integer(), nullable=True),
        sa.Column("here_series", sa.Integer(), nullable=True),
        sa.Column("here_instances", sa.Integer(), nullable=True),
        sa.Column("detail", _JSON, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_migration_item")),
        sa.ForeignKeyConstraint(["job_pk"], ["job.pk"], name=op.f("fk_migration_item_job_pk_job"), ondelete="CASCADE"),
        sa.UniqueConstraint("job_pk", "study_instance_uid", name=op.f("uq_migration_item_job_pk_study_instance_uid")),
    )
    op.create_index(op.f("ix_migration_item_job_pk_state_pk"), "migration_item", ["job_pk", "state", "pk"])

    op.create_table(
        "storage_commitment",
        sa.Column("transaction_uid", sa.String(length=64), nullable=False),
        sa.Column("job_pk", _KEY, nullable=True),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), server_default="", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("delete_after", sa.Boolean(), nullable=False),
        sa.Column("instances", _JSON, nullable=False),
        sa.Column("failed", _JSON, nullable=False),
        sa.Column("requested_at", _TIME, nullable=False),
        sa.Column("answered_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("transaction_uid", name=op.f("pk_storage_commitment")),
        sa.ForeignKeyConstraint(
            ["job_pk"], ["job.pk"], name=op.f("fk_storage_commitment_job_pk_job"), ondelete="SET NULL"
        ),
    )
    op.create_index(op.f("ix_storage_commitment_state_requested_at"), "storage_commitment", ["state", "requested_at"])

    op.create_table(
        "derived_instance",
        sa.Column("source_sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("derived_sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("source_sop_instance_uid", "kind", name=op.f("pk_derived_instance")),
    )


def downgrade() -> None:
    op.drop_table("derived_instance")
    op.drop_table("storage_commitment")
    op.drop_table("migration_item")
