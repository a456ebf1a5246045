"""imaging_order, requested_procedure, scheduled_step, procedure_status, report: orders from
HL7 ORM/OMI and the reports of ORU (issue 6)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 16:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _text(name: str, length: int) -> sa.Column[str]:
    return sa.Column(name, sa.String(length=length), server_default="", nullable=False)


def upgrade() -> None:
    op.create_table(
        "imaging_order",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        _text("placer_order_number", 64),
        _text("filler_order_number", 64),
        _text("accession_number", 64),
        _text("patient_id", 64),
        _text("issuer_of_patient_id", 64),
        _text("patient_name", 200),
        _text("sender", 200),
        _text("status", 8),
        _text("priority", 16),
        _text("department", 200),
        _text("requesting_physician", 200),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("message_pk", _KEY, nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_imaging_order")),
    )
    for column in ("placer_order_number", "filler_order_number", "accession_number", "patient_id"):
        op.create_index(op.f(f"ix_imaging_order_{column}"), "imaging_order", [column])

    op.create_table(
        "requested_procedure",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("order_pk", _KEY, nullable=False),
        sa.Column("requested_procedure_id", sa.String(length=64), nullable=False),
        _text("accession_number", 64),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        _text("description", 200),
        sa.Column("code", _JSON, nullable=True),
        _text("priority", 16),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["order_pk"],
            ["imaging_order.pk"],
            name=op.f("fk_requested_procedure_order_pk_imaging_order"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_requested_procedure")),
    )
    for name, columns in (
        ("order_pk", ["order_pk"]),
        ("accession_number", ["accession_number"]),
        ("study_instance_uid", ["study_instance_uid"]),
        ("status_status_at", ["status", "status_at"]),
    ):
        op.create_index(op.f(f"ix_requested_procedure_{name}"), "requested_procedure", columns)

    op.create_table(
        "scheduled_step",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("procedure_pk", _KEY, nullable=False),
        sa.Column("scheduled_step_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _text("modality", 16),
        _text("station_ae_title", 200),
        _text("start_date", 8),
        _text("start_time", 14),
        _text("patient_id", 64),
        sa.Column("attrs", _JSON, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["procedure_pk"],
            ["requested_procedure.pk"],
            name=op.f("fk_scheduled_step_procedure_pk_requested_procedure"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_scheduled_step")),
    )
    for name, columns in (
        ("procedure_pk", ["procedure_pk"]),
        ("start_date_modality", ["start_date", "modality"]),
        ("status", ["status"]),
        ("patient_id", ["patient_id"]),
    ):
        op.create_index(op.f(f"ix_scheduled_step_{name}"), "scheduled_step", columns)

    op.create_table(
        "procedure_status",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("procedure_pk", _KEY, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["procedure_pk"],
            ["requested_procedure.pk"],
            name=op.f("fk_procedure_status_procedure_pk_requested_procedure"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_procedure_status")),
    )
    op.create_index(op.f("ix_procedure_status_procedure_pk_pk"), "procedure_status", ["procedure_pk", "pk"])

    op.create_table(
        "report",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("order_pk", _KEY, nullable=True),
        sa.Column("procedure_pk", _KEY, nullable=True),
        _text("placer_order_number", 64),
        _text("filler_order_number", 64),
        _text("accession_number", 64),
        _text("requested_procedure_id", 64),
        _text("patient_id", 64),
        _text("issuer_of_patient_id", 64),
        _text("result_status", 4),
        sa.Column("status", sa.String(length=16), nullable=False),
        _text("observed_at", 26),
        sa.Column("study_instance_uids", _JSON, nullable=False),
        _text("verifier", 200),
        sa.Column("text", sa.Text(), server_default="", nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        _text("sender", 200),
        sa.Column("message_pk", _KEY, nullable=True),
        sa.Column("received_at", _TIME, nullable=False),
        _text("sop_instance_uid", 64),
        sa.ForeignKeyConstraint(
            ["order_pk"], ["imaging_order.pk"], name=op.f("fk_report_order_pk_imaging_order"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["procedure_pk"],
            ["requested_procedure.pk"],
            name=op.f("fk_report_procedure_pk_requested_procedure"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_report")),
    )
    for column in ("accession_number", "procedure_pk", "patient_id"):
        op.create_index(op.f(f"ix_report_{column}"), "report", [column])


def downgrade() -> None:
    for table in ("report", "procedure_status", "scheduled_step", "requested_procedure", "imaging_order"):
        op.drop_table(table)
