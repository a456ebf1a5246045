"""hl7_message: the HL7 message store, every message in and out, raw, with its summary (issue 6)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 14:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "hl7_message",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("received_at", _TIME, nullable=False),
        sa.Column("peer", sa.String(length=200), server_default="", nullable=False),
        sa.Column("sending_application", sa.String(length=200), server_default="", nullable=False),
        sa.Column("sending_facility", sa.String(length=200), server_default="", nullable=False),
        sa.Column("receiving_application", sa.String(length=200), server_default="", nullable=False),
        sa.Column("receiving_facility", sa.String(length=200), server_default="", nullable=False),
        sa.Column("message_type", sa.String(length=16), server_default="", nullable=False),
        sa.Column("trigger", sa.String(length=16), server_default="", nullable=False),
        sa.Column("control_id", sa.String(length=200), server_default="", nullable=False),
        sa.Column("version", sa.String(length=16), server_default="", nullable=False),
        sa.Column("processing_id", sa.String(length=4), server_default="", nullable=False),
        sa.Column("charset", sa.String(length=32), server_default="", nullable=False),
        sa.Column("patient_id", sa.String(length=200), server_default="", nullable=False),
        sa.Column("accession", sa.String(length=200), server_default="", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column("ack_code", sa.String(length=2), server_default="", nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("processed_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_hl7_message")),
    )
    for name, columns in (
        ("received_at", ["received_at"]),
        ("status_pk", ["status", "pk"]),
        ("patient_id", ["patient_id"]),
        ("accession", ["accession"]),
        ("control_id", ["control_id"]),
    ):
        op.create_index(op.f(f"ix_hl7_message_{name}"), "hl7_message", columns)


def downgrade() -> None:
    op.drop_table("hl7_message")
