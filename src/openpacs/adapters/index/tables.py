"""The index schema (SQLAlchemy Core). Documented for administrators in docs/schema.md.

Identity lives here: patients with any number of identifiers, studies, series and
instances, each level with its mutable attribute set (``attrs``, DICOM JSON) that the
outbound coercion applies; instances keep their as-received header (``header``, DICOM
JSON without bulk data). Columns beside ``attrs`` are copies of its values kept for
matching and sorting; they are always written together with ``attrs``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)
BigKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

patient = sa.Table(
    "patient",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("patient_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("issuer", sa.String(200), nullable=False, server_default=""),
    sa.Column("patient_name", sa.String(400), nullable=False, server_default=""),
    sa.Column("patient_name_match", sa.String(400), nullable=False, server_default=""),
    sa.Column("patient_birth_date", sa.String(16), nullable=False, server_default=""),
    sa.Column("patient_sex", sa.String(16), nullable=False, server_default=""),
    sa.Column("attrs", Json, nullable=False),
    sa.Column("num_studies", sa.Integer, nullable=False, server_default="0"),
    sa.Column("num_series", sa.Integer, nullable=False, server_default="0"),
    sa.Column("num_instances", sa.Integer, nullable=False, server_default="0"),
    sa.Column("merged_into_pk", BigKey, sa.ForeignKey("patient.pk"), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index(None, "patient_id"),
    sa.Index(None, "patient_name_match"),
    sa.Index(None, "patient_birth_date"),
)

patient_identifier = sa.Table(
    "patient_identifier",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("patient_pk", BigKey, sa.ForeignKey("patient.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("value", sa.String(64), nullable=False),
    sa.Column("issuer_namespace", sa.String(64), nullable=False, server_default=""),
    sa.Column("issuer_universal_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("issuer_universal_id_type", sa.String(16), nullable=False, server_default=""),
    sa.Column("type_code", sa.String(16), nullable=False, server_default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("value", "issuer_namespace", "issuer_universal_id", "issuer_universal_id_type"),
    sa.Index(None, "patient_pk"),
)

study = sa.Table(
    "study",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("patient_pk", BigKey, sa.ForeignKey("patient.pk"), nullable=False),
    sa.Column("study_date", sa.String(16), nullable=False, server_default=""),
    sa.Column("study_time", sa.String(16), nullable=False, server_default=""),
    sa.Column("accession_number", sa.String(64), nullable=False, server_default=""),
    sa.Column("accession_issuer", sa.String(200), nullable=False, server_default=""),
    sa.Column("study_id", sa.String(16), nullable=False, server_default=""),
    sa.Column("study_description", sa.String(400), nullable=False, server_default=""),
    sa.Column("referring_physician_name", sa.String(400), nullable=False, server_default=""),
    sa.Column("referring_physician_name_match", sa.String(400), nullable=False, server_default=""),
    sa.Column("modalities_in_study", sa.String(200), nullable=False, server_default=""),
    sa.Column("sop_classes_in_study", sa.Text, nullable=False, server_default=""),
    sa.Column("num_series", sa.Integer, nullable=False, server_default="0"),
    sa.Column("num_instances", sa.Integer, nullable=False, server_default="0"),
    sa.Column("size_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("attrs", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("last_instance_at", Timestamp, nullable=False),
    sa.Index(None, "patient_pk"),
    sa.Index(None, "study_date"),
    sa.Index(None, "accession_number"),
    sa.Index(None, "updated_at"),
)

series = sa.Table(
    "series",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("series_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("study_pk", BigKey, sa.ForeignKey("study.pk"), nullable=False),
    sa.Column("modality", sa.String(16), nullable=False, server_default=""),
    sa.Column("series_number", sa.Integer, nullable=True),
    sa.Column("series_description", sa.String(400), nullable=False, server_default=""),
    sa.Column("body_part_examined", sa.String(16), nullable=False, server_default=""),
    sa.Column("series_date", sa.String(16), nullable=False, server_default=""),
    sa.Column("series_time", sa.String(16), nullable=False, server_default=""),
    sa.Column("source_ae_title", sa.String(16), nullable=False, server_default=""),
    sa.Column("num_instances", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attrs", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index(None, "study_pk"),
)

series_request = sa.Table(
    "series_request",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("series_pk", BigKey, sa.ForeignKey("series.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("accession_number", sa.String(64), nullable=False, server_default=""),
    sa.Column("accession_issuer", sa.String(200), nullable=False, server_default=""),
    sa.Column("requested_procedure_id", sa.String(16), nullable=False, server_default=""),
    sa.Column("scheduled_procedure_step_id", sa.String(16), nullable=False, server_default=""),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, server_default=""),
    sa.Index(None, "series_pk"),
    sa.Index(None, "accession_number"),
    sa.Index(None, "requested_procedure_id"),
)

instance = sa.Table(
    "instance",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("series_pk", BigKey, sa.ForeignKey("series.pk"), nullable=False),
    sa.Column("sop_class_uid", sa.String(64), nullable=False),
    sa.Column("instance_number", sa.Integer, nullable=True),
    sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
    sa.Column("header", Json, nullable=False),
    # the header's patient/study/series level elements: coercion is decided on these alone
    sa.Column("level_values", Json, nullable=True),
    # the instance's own attribute set: values the outbound coercion puts over the header's
    # (a new SOP Instance UID, references rewritten after a reallocation); NULL: none
    sa.Column("attrs", Json, nullable=True),
    # hidden from clinical users: an IOCM rejection code (113001, 113037, 113038, 113039)
    # or "deleted" (a soft delete); NULL for a visible instance
    sa.Column("rejection", sa.String(16), nullable=True),
    sa.Column("rejected_at", Timestamp, nullable=True),
    sa.Column("source_ae_title", sa.String(16), nullable=False, server_default=""),
    # the called AE title of the association that stored it (routing conditions)
    sa.Column("called_ae_title", sa.String(16), nullable=False, server_default=""),
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Index(None, "series_pk", "instance_number"),
)

location = sa.Table(
    "location",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("instance_pk", BigKey, sa.ForeignKey("instance.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("store", sa.String(32), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("checksum", sa.String(80), nullable=False),
    sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("store", "key"),
    sa.Index(None, "instance_pk"),
)

pending_deletion = sa.Table(
    "pending_deletion",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("store", sa.String(32), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("not_before", Timestamp, nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index(None, "not_before"),
)

change_counter = sa.Table(
    "change_counter",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("change_type", sa.String(40), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("resource", sa.String(200), nullable=False),
    sa.Column("time", Timestamp, nullable=False),
)

consumer_checkpoint = sa.Table(
    "consumer_checkpoint",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

identity_conflict = sa.Table(
    "identity_conflict",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("patient_pk", BigKey, sa.ForeignKey("patient.pk"), nullable=True),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, server_default=""),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False, server_default=""),
    sa.Column("details", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("resolved_at", Timestamp, nullable=True),
    sa.Index(None, "patient_pk"),
    sa.Index(None, "resolved_at"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("time", Timestamp, nullable=False),
    sa.Column("actor_type", sa.String(16), nullable=False),
    sa.Column("actor_id", sa.String(200), nullable=False),
    sa.Column("actor_address", sa.String(100), nullable=False, server_default=""),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("outcome", sa.String(40), nullable=False),
    sa.Column("resources", Json, nullable=False),
    sa.Column("details", Json, nullable=False),
    sa.Index(None, "time"),
    sa.Index(None, "action"),
)

node = sa.Table(
    "node",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("ae_title", sa.String(16), nullable=False, unique=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("allow_store", sa.Boolean, nullable=False),
    sa.Column("allow_find", sa.Boolean, nullable=False),
    sa.Column("allow_get", sa.Boolean, nullable=False),
    sa.Column("allow_move_destination", sa.Boolean, nullable=False),
    sa.Column("check_host", sa.Boolean, nullable=False),
    sa.Column("default_issuer", sa.String(64), nullable=False, server_default=""),
    sa.Column("description", sa.String(400), nullable=False, server_default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    # how many associations (forwarding jobs) to it may run at once
    sa.Column("max_associations", sa.Integer, nullable=False, server_default="2"),
)

lease = sa.Table(
    "lease",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
)

user = sa.Table(
    "user_account",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("must_change_password", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("last_login_at", Timestamp, nullable=True),
)

api_token = sa.Table(
    "api_token",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("user_pk", BigKey, sa.ForeignKey("user_account.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("label", sa.String(100), nullable=False, server_default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_used_at", Timestamp, nullable=True),
    sa.Column("revoked_at", Timestamp, nullable=True),
    sa.Index(None, "user_pk"),
)

web_session = sa.Table(
    "web_session",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("user_pk", BigKey, sa.ForeignKey("user_account.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Index(None, "expires_at"),
)

qa_operation = sa.Table(
    "qa_operation",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("source", sa.String(16), nullable=False, server_default="local"),
    sa.Column("actor_type", sa.String(16), nullable=False),
    sa.Column("actor_id", sa.String(200), nullable=False),
    sa.Column("actor_address", sa.String(100), nullable=False, server_default=""),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("params", Json, nullable=False),
    sa.Column("edits", Json, nullable=False),
    sa.Column("summary", Json, nullable=False),
    sa.Column("undo_of_pk", BigKey, sa.ForeignKey("qa_operation.pk"), nullable=True),
    sa.Column("undone_by_pk", BigKey, sa.ForeignKey("qa_operation.pk"), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index(None, "created_at"),
)

qa_operation_object = sa.Table(
    "qa_operation_object",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("operation_pk", BigKey, sa.ForeignKey("qa_operation.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("object_key", sa.String(200), nullable=False),
    sa.Index(None, "object_key", "operation_pk"),
)

uid_alias = sa.Table(
    "uid_alias",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    # SERIES or IMAGE: a series or instance reallocated under a new UID (the old one is rejected)
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("old_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("new_uid", sa.String(64), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index(None, "new_uid"),
)

job = sa.Table(
    "job",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),
    # the destination: jobs of one queue share its slots (at most ``slots`` run at once)
    sa.Column("queue", sa.String(300), nullable=False),
    sa.Column("slots", sa.Integer, nullable=False, server_default="1"),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    # rule|destination|study: one pending job per key; instance keys after_pk < pk <= upto_pk
    sa.Column("dedupe_key", sa.String(500), nullable=False, server_default=""),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, server_default=""),
    sa.Column("after_pk", BigKey, nullable=True),
    sa.Column("upto_pk", BigKey, nullable=True),
    sa.Column("params", Json, nullable=False),
    sa.Column("progress", Json, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.Column("holder", sa.String(200), nullable=False, server_default=""),
    sa.Column("lease_expires_at", Timestamp, nullable=True),
    sa.Column("next_attempt_at", Timestamp, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Index(None, "state", "next_attempt_at"),
    sa.Index(None, "queue", "state"),
    sa.Index(None, "dedupe_key"),
    sa.Index(None, "study_instance_uid"),
)

job_parked = sa.Table(
    "job_parked",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("job_pk", BigKey, sa.ForeignKey("job.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=""),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index(None, "job_pk"),
)

route_rule = sa.Table(
    "route_rule",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("conditions", Json, nullable=False),
    sa.Column("actions", Json, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("description", sa.String(400), nullable=False, server_default=""),
    sa.Column("source", sa.String(16), nullable=False, server_default="api"),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
)

study_stability = sa.Table(
    "study_stability",
    metadata,
    sa.Column("study_instance_uid", sa.String(64), primary_key=True),
    sa.Column("due_at", Timestamp, nullable=False),
    sa.Index(None, "due_at"),
)

alert = sa.Table(
    "alert",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("details", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("acknowledged_at", Timestamp, nullable=True),
    sa.Index(None, "created_at"),
)

migration_item = sa.Table(
    "migration_item",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("job_pk", BigKey, sa.ForeignKey("job.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("study_instance_uid", sa.String(64), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("study_date", sa.String(16), nullable=False, server_default=""),
    # pending, transferred, verified, mismatch, failed
    sa.Column("state", sa.String(16), nullable=False),
    # what the source holds ("there") and what the archive holds ("here"); NULL: not counted yet
    sa.Column("there_series", sa.Integer, nullable=True),
    sa.Column("there_instances", sa.Integer, nullable=True),
    sa.Column("here_series", sa.Integer, nullable=True),
    sa.Column("here_instances", sa.Integer, nullable=True),
    sa.Column("detail", Json, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("job_pk", "study_instance_uid"),
    sa.Index(None, "job_pk", "state", "pk"),
)

storage_commitment = sa.Table(
    "storage_commitment",
    metadata,
    sa.Column("transaction_uid", sa.String(64), primary_key=True),
    sa.Column("job_pk", BigKey, sa.ForeignKey("job.pk", ondelete="SET NULL"), nullable=True),
    sa.Column("node", sa.String(64), nullable=False),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, server_default=""),
    # requested, committed, failed
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("delete_after", sa.Boolean, nullable=False),
    sa.Column("instances", Json, nullable=False),  # [[SOP Class UID, SOP Instance UID], ...] asked for
    sa.Column("failed", Json, nullable=False),  # [[class, instance, Failure Reason], ...] as answered
    sa.Column("requested_at", Timestamp, nullable=False),
    sa.Column("answered_at", Timestamp, nullable=True),
    sa.Index(None, "state", "requested_at"),
)

derived_instance = sa.Table(
    "derived_instance",
    metadata,
    sa.Column("source_sop_instance_uid", sa.String(64), primary_key=True),
    # what was made: "<transfer syntax UID>:<quality>"
    sa.Column("kind", sa.String(100), primary_key=True),
    sa.Column("derived_sop_instance_uid", sa.String(64), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

hl7_message = sa.Table(
    "hl7_message",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("direction", sa.String(3), nullable=False),  # in, out
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("peer", sa.String(200), nullable=False, server_default=""),  # host:port
    sa.Column("sending_application", sa.String(200), nullable=False, server_default=""),
    sa.Column("sending_facility", sa.String(200), nullable=False, server_default=""),
    sa.Column("receiving_application", sa.String(200), nullable=False, server_default=""),
    sa.Column("receiving_facility", sa.String(200), nullable=False, server_default=""),
    sa.Column("message_type", sa.String(16), nullable=False, server_default=""),
    sa.Column("trigger", sa.String(16), nullable=False, server_default=""),
    sa.Column("control_id", sa.String(200), nullable=False, server_default=""),
    sa.Column("version", sa.String(16), nullable=False, server_default=""),
    sa.Column("processing_id", sa.String(4), nullable=False, server_default=""),
    sa.Column("charset", sa.String(32), nullable=False, server_default=""),
    sa.Column("patient_id", sa.String(200), nullable=False, server_default=""),
    sa.Column("accession", sa.String(200), nullable=False, server_default=""),
    # received (stored, waiting to be processed), processed, failed, skipped, rejected (AR)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("ack_code", sa.String(2), nullable=False, server_default=""),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("processed_at", Timestamp, nullable=True),
    sa.Index(None, "received_at"),
    sa.Index(None, "status", "pk"),
    sa.Index(None, "patient_id"),
    sa.Index(None, "accession"),
    sa.Index(None, "control_id"),
)

# -- orders and results (issue 6; PS3.3 C.4.10 to C.4.12) ------------------------------------

imaging_order = sa.Table(
    "imaging_order",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("placer_order_number", sa.String(64), nullable=False, server_default=""),
    sa.Column("filler_order_number", sa.String(64), nullable=False, server_default=""),
    sa.Column("accession_number", sa.String(64), nullable=False, server_default=""),
    sa.Column("patient_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("issuer_of_patient_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("patient_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("sender", sa.String(200), nullable=False, server_default=""),  # MSH-3|MSH-4, or "rest"
    sa.Column("status", sa.String(8), nullable=False, server_default=""),  # ORC-5 as last received
    sa.Column("priority", sa.String(16), nullable=False, server_default=""),
    sa.Column("department", sa.String(200), nullable=False, server_default=""),
    sa.Column("requesting_physician", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("message_pk", BigKey, nullable=True),  # the last message that changed it
    sa.Index(None, "placer_order_number"),
    sa.Index(None, "filler_order_number"),
    sa.Index(None, "accession_number"),
    sa.Index(None, "patient_id"),
)

requested_procedure = sa.Table(
    "requested_procedure",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("order_pk", BigKey, sa.ForeignKey("imaging_order.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("requested_procedure_id", sa.String(64), nullable=False),
    sa.Column("accession_number", sa.String(64), nullable=False, server_default=""),
    sa.Column("study_instance_uid", sa.String(64), nullable=False),
    sa.Column("description", sa.String(200), nullable=False, server_default=""),
    sa.Column("code", Json, nullable=True),  # {"value", "meaning", "scheme"}
    sa.Column("priority", sa.String(16), nullable=False, server_default=""),
    # scheduled, arrived, in-progress, completed, preliminary, final, amended, cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_at", Timestamp, nullable=False),
    sa.Index(None, "order_pk"),
    sa.Index(None, "accession_number"),
    sa.Index(None, "study_instance_uid"),
    sa.Index(None, "status", "status_at"),
)

scheduled_step = sa.Table(
    "scheduled_step",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("procedure_pk", BigKey, sa.ForeignKey("requested_procedure.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("scheduled_step_id", sa.String(64), nullable=False),
    # SCHEDULED, ARRIVED, STARTED, COMPLETED, DISCONTINUED (Scheduled Procedure Step Status)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("modality", sa.String(16), nullable=False, server_default=""),
    sa.Column("station_ae_title", sa.String(200), nullable=False, server_default=""),  # backslash-separated
    sa.Column("start_date", sa.String(8), nullable=False, server_default=""),
    sa.Column("start_time", sa.String(14), nullable=False, server_default=""),
    sa.Column("patient_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("attrs", Json, nullable=False),  # the worklist item as DICOM JSON
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index(None, "procedure_pk"),
    sa.Index(None, "start_date", "modality"),
    sa.Index(None, "status"),
    sa.Index(None, "patient_id"),
)

procedure_status = sa.Table(
    "procedure_status",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("procedure_pk", BigKey, sa.ForeignKey("requested_procedure.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),  # hl7 ORM^O01 1234, mpps, ...
    sa.Index(None, "procedure_pk", "pk"),
)

report = sa.Table(
    "report",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("order_pk", BigKey, sa.ForeignKey("imaging_order.pk", ondelete="SET NULL"), nullable=True),
    sa.Column("procedure_pk", BigKey, sa.ForeignKey("requested_procedure.pk", ondelete="SET NULL"), nullable=True),
    sa.Column("placer_order_number", sa.String(64), nullable=False, server_default=""),
    sa.Column("filler_order_number", sa.String(64), nullable=False, server_default=""),
    sa.Column("accession_number", sa.String(64), nullable=False, server_default=""),
    sa.Column("requested_procedure_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("patient_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("issuer_of_patient_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("result_status", sa.String(4), nullable=False, server_default=""),  # OBR-25
    sa.Column("status", sa.String(16), nullable=False),  # preliminary, final, amended
    sa.Column("observed_at", sa.String(26), nullable=False, server_default=""),
    sa.Column("study_instance_uids", Json, nullable=False),
    sa.Column("verifier", sa.String(200), nullable=False, server_default=""),
    sa.Column("text", sa.Text, nullable=False, server_default=""),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("sender", sa.String(200), nullable=False, server_default=""),
    sa.Column("message_pk", BigKey, nullable=True),
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False, server_default=""),  # DICOM copy
    sa.Index(None, "accession_number"),
    sa.Index(None, "procedure_pk"),
    sa.Index(None, "patient_id"),
)

# -- radiology workflow (issue 7) -------------------------------------------------------------

study_procedure = sa.Table(
    "study_procedure",
    metadata,
    sa.Column("study_instance_uid", sa.String(64), primary_key=True),
    sa.Column("procedure_pk", BigKey, sa.ForeignKey("requested_procedure.pk", ondelete="CASCADE"), primary_key=True),
    # order-uid, request-attributes, accession, mpps, manual
    sa.Column("linked_by", sa.String(24), nullable=False),
    sa.Column("linked_at", Timestamp, nullable=False),
    sa.Index(None, "procedure_pk"),
)

mpps = sa.Table(
    "mpps",
    metadata,
    sa.Column("sop_instance_uid", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # IN PROGRESS, COMPLETED, DISCONTINUED
    sa.Column("station_ae_title", sa.String(64), nullable=False, server_default=""),  # who sent it
    sa.Column("patient_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("study_instance_uids", Json, nullable=False),
    sa.Column("attrs", Json, nullable=False),  # the MPPS as DICOM JSON
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index(None, "status", "updated_at"),
    sa.Index(None, "patient_id"),
)

commitment_request = sa.Table(
    "commitment_request",
    metadata,
    sa.Column("transaction_uid", sa.String(64), primary_key=True),
    sa.Column("calling_ae_title", sa.String(64), nullable=False),
    sa.Column("address", sa.String(200), nullable=False, server_default=""),
    # pending (N-EVENT-REPORT not yet delivered), reported, undeliverable
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("instances", Json, nullable=False),  # [[SOP Class UID, SOP Instance UID], ...]
    sa.Column("failed", Json, nullable=False),  # [[class, instance, Failure Reason], ...]
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("reported_at", Timestamp, nullable=True),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Index(None, "state", "received_at"),
)

committed_instance = sa.Table(
    "committed_instance",
    metadata,
    sa.Column("sop_instance_uid", sa.String(64), primary_key=True),
    sa.Column("transaction_uid", sa.String(64), primary_key=True),
    sa.Column("calling_ae_title", sa.String(64), nullable=False),
    sa.Column("committed_at", Timestamp, nullable=False),
)

reading_filter = sa.Table(
    "reading_filter",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(64), nullable=False, server_default=""),  # "" = shared
    sa.Column("criteria", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("owner", "name"),
)

reading_claim = sa.Table(
    "reading_claim",
    metadata,
    sa.Column("study_instance_uid", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("claimed_at", Timestamp, nullable=False),
)

reading_assignment = sa.Table(
    "reading_assignment",
    metadata,
    sa.Column("study_instance_uid", sa.String(64), primary_key=True),
    sa.Column("worklist", sa.String(64), primary_key=True),
    sa.Column("assigned_by", sa.String(64), nullable=False, server_default=""),  # the rule, or a user
    sa.Column("assigned_at", Timestamp, nullable=False),
    sa.Index(None, "worklist"),
)

rule_history = sa.Table(
    "rule_history",
    metadata,
    sa.Column("pk", BigKey, primary_key=True, autoincrement=True),
    sa.Column("rule_name", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("change", sa.String(16), nullable=False),  # created, changed, deleted
    sa.Column("rule", Json, nullable=False),
    sa.Column("changed_by", sa.String(64), nullable=False, server_default=""),
    sa.Column("changed_at", Timestamp, nullable=False),
    sa.Index(None, "rule_name", "version"),
)
