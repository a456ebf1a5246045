"""study_procedure, mpps, commitment_request, committed_instance, reading_filter, reading_claim, rule_history,
reading_assignment, route_rule.version: the radiology workflow (issue 7)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _text(name: str, length: int) -> sa.Column[str]:
    return sa.Column(name, sa.String(length=length), server_default="", nullable=False)


def upgrade() -> None:
    op.create_table(
        "study_procedure",
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("procedure_pk", _KEY, nullable=False),
        sa.Column("linked_by", sa.String(length=24), nullable=False),
        sa.Column("linked_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["procedure_pk"],
            ["requested_procedure.pk"],
            name=op.f("fk_study_procedure_procedure_pk_requested_procedure"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("study_instance_uid", "procedure_pk", name=op.f("pk_study_procedure")),
    )
    op.create_index(op.f("ix_study_procedure_procedure_pk"), "study_procedure", ["procedure_pk"])

    op.create_table(
        "mpps",
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _text("station_ae_title", 64),
        _text("patient_id", 64),
        sa.Column("study_instance_uids", _JSON, nullable=False),
        sa.Column("attrs", _JSON, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("sop_instance_uid", name=op.f("pk_mpps")),
    )
    op.create_index(op.f("ix_mpps_status_updated_at"), "mpps", ["status", "updated_at"])
    op.create_index(op.f("ix_mpps_patient_id"), "mpps", ["patient_id"])

    op.create_table(
        "commitment_request",
        sa.Column("transaction_uid", sa.String(length=64), nullable=False),
        sa.Column("calling_ae_title", sa.String(length=64), nullable=False),
        _text("address", 200),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("instances", _JSON, nullable=False),
        sa.Column("failed", _JSON, nullable=False),
        sa.Column("received_at", _TIME, nullable=False),
        sa.Column("reported_at", _TIME, nullable=True),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("transaction_uid", name=op.f("pk_commitment_request")),
    )
    op.create_index(op.f("ix_commitment_request_state_received_at"), "commitment_request", ["state", "received_at"])

    op.create_table(
        "committed_instance",
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("transaction_uid", sa.String(length=64), nullable=False),
        sa.Column("calling_ae_title", sa.String(length=64), nullable=False),
        sa.Column("committed_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("sop_instance_uid", "transaction_uid", name=op.f("pk_committed_instance")),
    )

    op.create_table(
        "reading_filter",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        _text("owner", 64),
        sa.Column("criteria", _JSON, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_reading_filter")),
        sa.UniqueConstraint("owner", "name", name=op.f("uq_reading_filter_owner_name")),
    )

    op.create_table(
        "reading_claim",
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("study_instance_uid", name=op.f("pk_reading_claim")),
    )

    op.create_table(
        "reading_assignment",
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("worklist", sa.String(length=64), nullable=False),
        _text("assigned_by", 64),
        sa.Column("assigned_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("study_instance_uid", "worklist", name=op.f("pk_reading_assignment")),
    )
    op.create_index(op.f("ix_reading_assignment_worklist"), "reading_assignment", ["worklist"])

    op.create_table(
        "rule_history",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("rule_name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("rule", _JSON, nullable=False),
        _text("changed_by", 64),
        sa.Column("changed_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_rule_history")),
    )
    op.create_index(op.f("ix_rule_history_rule_name_version"), "rule_history", ["rule_name", "version"])

    with op.batch_alter_table("route_rule") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("route_rule") as batch:
        batch.drop_column("version")
    for table in (
        "rule_history",
        "reading_assignment",
        "reading_claim",
        "reading_filter",
        "committed_instance",
        "commitment_request",
        "mpps",
        "study_procedure",
    ):
        op.drop_table(table)
