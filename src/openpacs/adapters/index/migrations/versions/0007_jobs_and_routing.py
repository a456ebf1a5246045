"""jobs, routing rules, study stability, alerts; instance.called_ae_title; node.max_associations (issue 5)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("instance", sa.Column("called_ae_title", sa.String(length=16), server_default="", nullable=False))
    op.add_column("node", sa.Column("max_associations", sa.Integer(), server_default="2", nullable=False))
    op.create_table(
        "job",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("queue", sa.String(length=300), nullable=False),
        sa.Column("slots", sa.Integer(), server_default="1", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("dedupe_key", sa.String(length=500), server_default="", nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), server_default="", nullable=False),
        sa.Column("after_pk", _KEY, nullable=True),
        sa.Column("upto_pk", _KEY, nullable=True),
        sa.Column("params", _JSON, nullable=False),
        sa.Column("progress", _JSON, nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.Column("holder", sa.String(length=200), server_default="", nullable=False),
        sa.Column("lease_expires_at", _TIME, nullable=True),
        sa.Column("next_attempt_at", _TIME, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("finished_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_job")),
    )
    op.create_index(op.f("ix_job_state_next_attempt_at"), "job", ["state", "next_attempt_at"])
    op.create_index(op.f("ix_job_queue_state"), "job", ["queue", "state"])
    op.create_index(op.f("ix_job_dedupe_key"), "job", ["dedupe_key"])
    op.create_index(op.f("ix_job_study_instance_uid"), "job", ["study_instance_uid"])
    op.create_table(
        "job_parked",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("job_pk", _KEY, nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="", nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["job_pk"], ["job.pk"], name=op.f("fk_job_parked_job_pk_job"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_job_parked")),
    )
    op.create_index(op.f("ix_job_parked_job_pk"), "job_parked", ["job_pk"])
    op.create_table(
        "route_rule",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("conditions", _JSON, nullable=False),
        sa.Column("actions", _JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("description", sa.String(length=400), server_default="", nullable=False),
        sa.Column("source", sa.String(length=16), server_default="api", nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_route_rule")),
        sa.UniqueConstraint("name", name=op.f("uq_route_rule_name")),
    )
    op.create_table(
        "study_stability",
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("due_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("study_instance_uid", name=op.f("pk_study_stability")),
    )
    op.create_index(op.f("ix_study_stability_due_at"), "study_stability", ["due_at"])
    op.create_table(
        "alert",
        sa.Column("pk", _KEY, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", _JSON, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("acknowledged_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_alert")),
    )
    op.create_index(op.f("ix_alert_created_at"), "alert", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_alert_created_at"), table_name="alert")
    op.drop_table("alert")
    op.drop_index(op.f("ix_study_stability_due_at"), table_name="study_stability")
    op.drop_table("study_stability")
    op.drop_table("route_rule")
    op.drop_index(op.f("ix_job_parked_job_pk"), table_name="job_parked")
    op.drop_table("job_parked")
    for name in ("study_instance_uid", "dedupe_key", "queue_state", "state_next_attempt_at"):
        op.drop_index(op.f(f"ix_job_{name}"), table_name="job")
    op.drop_table("job")
    op.drop_column("node", "max_associations")
    op.drop_column("instance", "called_ae_title")
