"""initial schema: identity, instances, change feed, audit, nodes

Revision ID: 0001
Revises:
Create Date: 2026-11-28 03:04:10.054192
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "audit",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=200), nullable=False),
        sa.Column("actor_address", sa.String(length=100), server_default="", nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column(
            "resources",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_audit")),
    )
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_time"), ["time"], unique=False)

    op.create_table(
        "change_counter",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_counter")),
    )
    op.bulk_insert(
        sa.table("change_counter", sa.column("id", sa.Integer()), sa.column("last_seq", sa.BigInteger())),
        [{"id": 1, "last_seq": 0}],
    )
    op.create_table(
        "changes",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("change_type", sa.String(length=40), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("resource", sa.String(length=200), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_changes")),
    )
    op.create_table(
        "consumer_checkpoint",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_consumer_checkpoint")),
    )
    op.create_table(
        "lease",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_lease")),
    )
    op.create_table(
        "node",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("allow_store", sa.Boolean(), nullable=False),
        sa.Column("allow_find", sa.Boolean(), nullable=False),
        sa.Column("allow_get", sa.Boolean(), nullable=False),
        sa.Column("allow_move_destination", sa.Boolean(), nullable=False),
        sa.Column("check_host", sa.Boolean(), nullable=False),
        sa.Column("default_issuer", sa.String(length=64), server_default="", nullable=False),
        sa.Column("description", sa.String(length=400), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_node")),
        sa.UniqueConstraint("ae_title", name=op.f("uq_node_ae_title")),
        sa.UniqueConstraint("name", name=op.f("uq_node_name")),
    )
    op.create_table(
        "patient",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("patient_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("issuer", sa.String(length=200), server_default="", nullable=False),
        sa.Column("patient_name", sa.String(length=400), server_default="", nullable=False),
        sa.Column("patient_name_match", sa.String(length=400), server_default="", nullable=False),
        sa.Column("patient_birth_date", sa.String(length=16), server_default="", nullable=False),
        sa.Column("patient_sex", sa.String(length=16), server_default="", nullable=False),
        sa.Column(
            "attrs",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("num_studies", sa.Integer(), server_default="0", nullable=False),
        sa.Column("num_series", sa.Integer(), server_default="0", nullable=False),
        sa.Column("num_instances", sa.Integer(), server_default="0", nullable=False),
        sa.Column("merged_into_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["merged_into_pk"], ["patient.pk"], name=op.f("fk_patient_merged_into_pk_patient")),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_patient")),
    )
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_patient_patient_birth_date"), ["patient_birth_date"], unique=False)
        batch_op.create_index(batch_op.f("ix_patient_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_patient_patient_name_match"), ["patient_name_match"], unique=False)

    op.create_table(
        "pending_deletion",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("store", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_pending_deletion")),
    )
    with op.batch_alter_table("pending_deletion", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pending_deletion_not_before"), ["not_before"], unique=False)

    op.create_table(
        "identity_conflict",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("patient_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("study_instance_uid", sa.String(length=64), server_default="", nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), server_default="", nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["patient_pk"], ["patient.pk"], name=op.f("fk_identity_conflict_patient_pk_patient")),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_identity_conflict")),
    )
    with op.batch_alter_table("identity_conflict", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identity_conflict_patient_pk"), ["patient_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_identity_conflict_resolved_at"), ["resolved_at"], unique=False)

    op.create_table(
        "patient_identifier",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("patient_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("issuer_namespace", sa.String(length=64), server_default="", nullable=False),
        sa.Column("issuer_universal_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("issuer_universal_id_type", sa.String(length=16), server_default="", nullable=False),
        sa.Column("type_code", sa.String(length=16), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_pk"],
            ["patient.pk"],
            name=op.f("fk_patient_identifier_patient_pk_patient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_patient_identifier")),
        sa.UniqueConstraint(
            "value",
            "issuer_namespace",
            "issuer_universal_id",
            "issuer_universal_id_type",
            name=op.f("uq_patient_identifier_value_issuer_namespace_issuer_universal_id_issuer_universal_id_type"),
        ),
    )
    with op.batch_alter_table("patient_identifier", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_patient_identifier_patient_pk"), ["patient_pk"], unique=False)

    op.create_table(
        "study",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("study_date", sa.String(length=16), server_default="", nullable=False),
        sa.Column("study_time", sa.String(length=16), server_default="", nullable=False),
        sa.Column("accession_number", sa.String(length=64), server_default="", nullable=False),
        sa.Column("accession_issuer", sa.String(length=200), server_default="", nullable=False),
        sa.Column("study_id", sa.String(length=16), server_default="", nullable=False),
        sa.Column("study_description", sa.String(length=400), server_default="", nullable=False),
        sa.Column("referring_physician_name", sa.String(length=400), server_default="", nullable=False),
        sa.Column(
            "referring_physician_name_match",
            sa.String(length=400),
            server_default="",
            nullable=False,
        ),
        sa.Column("modalities_in_study", sa.String(length=200), server_default="", nullable=False),
        sa.Column("sop_classes_in_study", sa.Text(), server_default="", nullable=False),
        sa.Column("num_series", sa.Integer(), server_default="0", nullable=False),
        sa.Column("num_instances", sa.Integer(), server_default="0", nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "attrs",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_instance_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_pk"], ["patient.pk"], name=op.f("fk_study_patient_pk_patient")),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_study")),
        sa.UniqueConstraint("study_instance_uid", name=op.f("uq_study_study_instance_uid")),
    )
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_accession_number"), ["accession_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_study_patient_pk"), ["patient_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_study_study_date"), ["study_date"], unique=False)
        batch_op.create_index(batch_op.f("ix_study_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "series",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("modality", sa.String(length=16), server_default="", nullable=False),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("series_description", sa.String(length=400), server_default="", nullable=False),
        sa.Column("body_part_examined", sa.String(length=16), server_default="", nullable=False),
        sa.Column("series_date", sa.String(length=16), server_default="", nullable=False),
        sa.Column("series_time", sa.String(length=16), server_default="", nullable=False),
        sa.Column("source_ae_title", sa.String(length=16), server_default="", nullable=False),
        sa.Column("num_instances", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "attrs",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_pk"], ["study.pk"], name=op.f("fk_series_study_pk_study")),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_series")),
        sa.UniqueConstraint("series_instance_uid", name=op.f("uq_series_series_instance_uid")),
    )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_series_study_pk"), ["study_pk"], unique=False)

    op.create_table(
        "instance",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column(
            "header",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("source_ae_title", sa.String(length=16), server_default="", nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["series_pk"], ["series.pk"], name=op.f("fk_instance_series_pk_series")),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_instance")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_instance_sop_instance_uid")),
    )
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_instance_series_pk_instance_number"),
            ["series_pk", "instance_number"],
            unique=False,
        )

    op.create_table(
        "series_request",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("series_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("accession_number", sa.String(length=64), server_default="", nullable=False),
        sa.Column("accession_issuer", sa.String(length=200), server_default="", nullable=False),
        sa.Column("requested_procedure_id", sa.String(length=16), server_default="", nullable=False),
        sa.Column("scheduled_procedure_step_id", sa.String(length=16), server_default="", nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["series_pk"],
            ["series.pk"],
            name=op.f("fk_series_request_series_pk_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_series_request")),
    )
    with op.batch_alter_table("series_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_series_request_accession_number"), ["accession_number"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_series_request_requested_procedure_id"),
            ["requested_procedure_id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_series_request_series_pk"), ["series_pk"], unique=False)

    op.create_table(
        "location",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("instance_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("store", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(length=80), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_pk"],
            ["instance.pk"],
            name=op.f("fk_location_instance_pk_instance"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_location")),
        sa.UniqueConstraint("store", "key", name=op.f("uq_location_store_key")),
    )
    with op.batch_alter_table("location", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_location_instance_pk"), ["instance_pk"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("location", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_location_instance_pk"))

    op.drop_table("location")
    with op.batch_alter_table("series_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_series_request_series_pk"))
        batch_op.drop_index(batch_op.f("ix_series_request_requested_procedure_id"))
        batch_op.drop_index(batch_op.f("ix_series_request_accession_number"))

    op.drop_table("series_request")
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instance_series_pk_instance_number"))

    op.drop_table("instance")
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_series_study_pk"))

    op.drop_table("series")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_updated_at"))
        batch_op.drop_index(batch_op.f("ix_study_study_date"))
        batch_op.drop_index(batch_op.f("ix_study_patient_pk"))
        batch_op.drop_index(batch_op.f("ix_study_accession_number"))

    op.drop_table("study")
    with op.batch_alter_table("patient_identifier", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_identifier_patient_pk"))

    op.drop_table("patient_identifier")
    with op.batch_alter_table("identity_conflict", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_conflict_resolved_at"))
        batch_op.drop_index(batch_op.f("ix_identity_conflict_patient_pk"))

    op.drop_table("identity_conflict")
    with op.batch_alter_table("pending_deletion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_deletion_not_before"))

    op.drop_table("pending_deletion")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_patient_name_match"))
        batch_op.drop_index(batch_op.f("ix_patient_patient_id"))
        batch_op.drop_index(batch_op.f("ix_patient_patient_birth_date"))

    op.drop_table("patient")
    op.drop_table("node")
    op.drop_table("lease")
    op.drop_table("consumer_checkpoint")
    op.drop_table("changes")
    op.drop_table("change_counter")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_time"))
        batch_op.drop_index(batch_op.f("ix_audit_action"))

    op.drop_table("audit")
