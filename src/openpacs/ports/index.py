"""The Index port: the database of identity, instances, change feed, audit and nodes.

An :class:`Index` hands out units of work (:class:`IndexSession`); everything done in
one unit commits or rolls back together (ARCHITECTURE.md section 3, step 3). Sessions
opened with ``write=True`` take the write lock at once (SQLite ``BEGIN IMMEDIATE``),
so that a unit of work never fails half way for lack of it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from openpacs.domain.commitment import CommitmentState
from openpacs.domain.hl7 import MessageQuery, StoredMessage, Summary
from openpacs.domain.jobs import Job, JobState, Parked
from openpacs.domain.matching import Query
from openpacs.domain.migration import ItemState, MigrationItem
from openpacs.domain.orders import OrderEntry, OrderRow, ProcedureEntry, ProcedureRow, ReportEntry, ReportRow, StepRow
from openpacs.domain.qa import Operation
from openpacs.domain.records import (
    Actor,
    BlobRef,
    Change,
    Node,
    PatientIdentifier,
    Stats,
    StoredInstance,
)
from openpacs.domain.rules import Rule
from openpacs.domain.tags import Level
from openpacs.domain.users import Role, User


@dataclass
class PatientRow:
    """A patient with its attribute set and identifiers (None: not read yet)."""

    pk: int
    attrs: dict[str, Any]
    identifiers: list[PatientIdentifier] | None
    merged_into_pk: int | None = None


@dataclass
class StudyRow:
    """A study with its attribute set (and its aggregates, when read from the index)."""

    pk: int
    uid: str
    patient_pk: int
    attrs: dict[str, Any]
    modalities: str | None = None
    sop_classes: str | None = None


@dataclass
class SeriesRow:
    """A series with its attribute set."""

    pk: int
    uid: str
    study_pk: int
    attrs: dict[str, Any]


@dataclass
class SeriesContext:
    """A series with its study and patient, read in one go (the common case of ingest)."""

    series: SeriesRow
    study: StudyRow
    patient: PatientRow


@dataclass
class InstanceBrief:
    """What the duplicate check needs of a stored instance."""

    pk: int
    sop_instance_uid: str
    series_pk: int
    checksum: str
    blob: BlobRef
    transfer_syntax_uid: str
    hidden: str | None = None  # a rejection code, "deleted" or "rejection-note" (None: visible)
    #: a retired SOP Instance UID: the UID the instance now has (its old identity is rejected, 113038)
    moved_to: str | None = None


@dataclass
class NewInstance:
    """An instance row to insert (or to replace an existing one with)."""

    series_pk: int
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    transfer_syntax_uid: str
    header: dict[str, Any]
    source_ae_title: str
    received_at: datetime
    blob: BlobRef
    checksum: str
    called_ae_title: str = ""


@dataclass
class CountDelta:
    """Aggregate changes of one series (and its study and patient) in a unit of work."""

    patient_pk: int
    study_pk: int
    series_pk: int
    new_studies: int = 0
    new_series: int = 0
    new_instances: int = 0
    size_bytes: int = 0
    modalities: set[str] = field(default_factory=set)
    sop_classes: set[str] = field(default_factory=set)
    known_modalities: str | None = None  # the study's current aggregates, None when unknown
    known_sop_classes: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry (who, what, on which resources, with which outcome)."""

    time: datetime
    actor: Actor
    action: str
    outcome: str
    resources: list[dict[str, str]]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChangeRecord:
    """A change to publish on the feed, in the transaction of the change itself."""

    change_type: str
    level: Level
    resource: str


@dataclass(frozen=True)
class Conflict:
    """An identity conflict flagged for reconciliation."""

    kind: str
    patient_pk: int | None
    study_instance_uid: str
    sop_instance_uid: str
    details: dict[str, Any]
    pk: int | None = None  # its row, once recorded


@dataclass(frozen=True)
class InstanceState:
    """An instance, where it is, and whether it is hidden (its rejection code, or "deleted")."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    hidden: str | None


@dataclass(frozen=True)
class PendingDeletion:
    """A blob due for removal once ``not_before`` has passed."""

    pk: int
    store: str
    key: str
    not_before: datetime
    reason: str


class Removal(Protocol):
    """What a removal took out of the index."""

    instances: list[str]
    series: list[str]
    studies: list[str]
    blobs: list[BlobRef]


@dataclass
class MatchRow:
    """One answer of a query: the attribute sets down to the query level, and the aggregates."""

    patient: dict[str, Any]
    study: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)
    instance: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)


class AccountStore(Protocol):
    """Users, API tokens and web sessions (issue 3)."""

    def users(self) -> list[User]: ...
    def count_users(self) -> int: ...
    def user_with_hash(self, name: str) -> tuple[User, str] | None: ...
    def user(self, pk: int) -> User | None: ...
    def add_user(self, name: str, role: Role, password_hash: str, must_change: bool, now: datetime) -> int: ...
    def update_user(self, pk: int, now: datetime, **values: Any) -> None: ...
    def remove_user(self, name: str) -> bool: ...
    def add_token(self, user_pk: int, token_hash: str, label: str, now: datetime) -> None: ...
    def user_by_token(self, token_hash: str) -> User | None: ...
    def revoke_tokens(self, user_pk: int, now: datetime) -> int: ...
    def add_session(self, user_pk: int, token_hash: str, csrf: str, now: datetime, expires: datetime) -> None: ...
    def session(self, token_hash: str, now: datetime) -> tuple[User, str] | None: ...
    def remove_session(self, token_hash: str) -> None: ...
    def remove_sessions_of(self, user_pk: int) -> None: ...
    def purge_sessions(self, now: datetime) -> None: ...


@dataclass(frozen=True)
class InstancePlace:
    """Where an instance is, with its own attribute set (what reallocations plan on)."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_pk: int
    hidden: str | None
    attrs: dict[str, Any]


class ReallocationStore(Protocol):
    """Series and instances moved under new UIDs, and the retired UIDs (issue 4)."""

    def alias_of(self, uid: str) -> tuple[str, str] | None:
        """(level, current UID) of a retired UID, else None."""
        ...

    def places(self, sop_instance_uids: Sequence[str]) -> dict[str, InstancePlace]: ...
    def series_members(self, series_uid: str) -> list[str]: ...
    def series_of_study(self, study_uid: str) -> list[str]: ...
    def series_study(self, series_uid: str) -> str | None: ...
    def referencing(self, patient_pks: Collection[int], uids: Collection[str]) -> list[tuple[str, dict[str, Any]]]: ...
    def create_series_like(self, template_uid: str, study_uid: str, attrs: dict[str, Any], now: datetime) -> None: ...
    def create_study_like(self, patient_pk: int, attrs: dict[str, Any], now: datetime) -> None: ...
    def remove_if_empty(self, level: str, uid: str) -> bool: ...
    def set_series_study(self, series_uid: str, study_uid: str, now: datetime) -> None: ...
    def set_instances_series(self, sop_instance_uids: Sequence[str], series_uid: str) -> None: ...
    def rename_series(self, old: str, new: str, now: datetime) -> None: ...
    def rename_instances(self, pairs: Sequence[tuple[str, str]], now: datetime) -> None: ...
    def set_instance_attrs(self, items: Iterable[tuple[str, dict[str, Any] | None]]) -> None: ...
    def set_alias(self, level: str, old: str, new: str | None, now: datetime) -> None: ...
    def recount(self, study_uids: Collection[str]) -> None: ...


class JobStore(Protocol):
    """The job queue, study stability and alerts (issue 5)."""

    def enqueue(self, job: Job, slots: int, dedupe_key: str, pks: Sequence[int], now: datetime) -> int: ...
    def add(self, job: Job, slots: int, now: datetime, *, dedupe_key: str = "") -> int: ...
    def queued(self, dedupe_key: str) -> bool: ...
    def waiting(self, dedupe_key: str) -> bool:
        """Whether a job of this key has not started yet (pending, or paused)."""
        ...

    def claim(self, holder: str, now: datetime, lease: timedelta) -> Job | None: ...
    def job(self, pk: int) -> Job | None: ...
    def range_of(self, pk: int) -> tuple[int, int | None]: ...
    def jobs(self, state: str | None, limit: int, before: int | None) -> list[Job]: ...
    def heartbeat(self, pk: int, holder: str, progress: dict[str, Any], now: datetime, lease: timedelta) -> str: ...
    def finish(
        self,
        pk: int,
        holder: str,
        state: JobState,
        progress: dict[str, Any],
        now: datetime,
        *,
        error: str = "",
        next_attempt_at: datetime | None = None,
        reset_attempts: bool = False,
    ) -> None: ...
    def set_state(self, pk: int, state: JobState, allowed_from: Sequence[JobState], now: datetime) -> bool: ...
    def park(self, pk: int, items: Sequence[tuple[str, str, str]], now: datetime) -> None: ...
    def parked(self, pk: int) -> list[Parked]: ...
    def counts(self) -> dict[str, int]: ...
    def touch_studies(self, study_uids: Sequence[str], due: datetime) -> None: ...
    def take_stable(self, now: datetime, limit: int) -> list[str]: ...
    def add_alert(self, kind: str, message: str, details: dict[str, Any], now: datetime) -> None: ...
    def alerts(self, limit: int, open_only: bool) -> list[dict[str, Any]]: ...
    def acknowledge_alert(self, pk: int, now: datetime) -> bool: ...


class RuleStore(Protocol):
    """Routing rules (issue 5)."""

    def rules(self) -> list[Rule]: ...
    def rule(self, name: str) -> Rule | None: ...
    def add_rule(self, rule: Rule, now: datetime) -> None: ...
    def remove_rule(self, name: str) -> bool: ...


class MigrationStore(Protocol):
    """The studies migration jobs walk (issue 5)."""

    def add_items(self, job_pk: int, items: Sequence[MigrationItem], now: datetime) -> int: ...
    def items(
        self, job_pk: int, states: Sequence[str] = (), after: int = 0, limit: int = 100
    ) -> list[MigrationItem]: ...
    def items_by_uid(self, job_pk: int, study_uids: Sequence[str]) -> dict[str, MigrationItem]: ...
    def update_item(self, pk: int, now: datetime, **values: Any) -> None: ...
    def reset_items(self, job_pk: int, states: Sequence[str], to: ItemState, now: datetime) -> int: ...
    def item_counts(self, job_pk: int) -> dict[str, int]: ...
    def study_counts(self, study_uids: Sequence[str]) -> dict[str, tuple[int, int]]: ...
    def instances_present(self, sop_instance_uids: Sequence[str]) -> set[str]: ...


class CommitmentStore(Protocol):
    """Storage commitment requests to forwarding destinations (issue 5)."""

    def add_commitment(
        self,
        transaction_uid: str,
        job_pk: int | None,
        node: str,
        study_uid: str,
        instances: Sequence[tuple[str, str]],
        delete_after: bool,
        now: datetime,
    ) -> None: ...
    def commitment(self, transaction_uid: str) -> dict[str, Any] | None: ...
    def answer_commitment(
        self, transaction_uid: str, state: CommitmentState, failed: Sequence[tuple[str, str, int]], now: datetime
    ) -> bool: ...
    def commitments_of_job(self, job_pk: int) -> list[dict[str, Any]]: ...


class DerivedStore(Protocol):
    """Lossy copies made for routing (issue 5)."""

    def derived_of(self, source_uid: str, kind: str) -> str | None: ...
    def add_derived(self, source_uid: str, kind: str, derived_uid: str, now: datetime) -> str: ...


class Hl7MessageStore(Protocol):
    """The HL7 message store (issue 6)."""

    def add_message(self, message: StoredMessage) -> int: ...
    def message(self, pk: int) -> StoredMessage | None: ...
    def messages(self, query: MessageQuery) -> list[StoredMessage]: ...
    def message_counts(self) -> dict[str, int]: ...
    def pending(self, limit: int) -> list[StoredMessage]: ...
    def held_patients(self) -> set[tuple[str, str]]: ...
    def set_status(self, pk: int, status: str, error: str, now: datetime) -> None: ...
    def set_ack(self, pk: int, code: str) -> None: ...
    def waiting_counts(self) -> dict[tuple[str, str], int]: ...
    def outbox(self, destination: str, limit: int) -> list[StoredMessage]: ...
    def set_summary(self, pk: int, summary: Summary) -> None: ...
    def delete_before(self, before: datetime, statuses: Sequence[str]) -> int: ...


class OrderStore(Protocol):
    """Orders, requested procedures, scheduled steps (the worklist) and reports (issue 6)."""

    def find_order(self, placer: str, filler: str, accession: str) -> OrderRow | None: ...
    def order(self, pk: int) -> OrderRow | None: ...
    def orders(
        self, *, patient_id: str = "", accession: str = "", status: str = "", limit: int = 100,
        before: int | None = None,
    ) -> list[OrderRow]: ...  # fmt: skip
    def save_order(
        self, pk: int | None, entry: OrderEntry, sender: str, message_pk: int | None, now: datetime
    ) -> int: ...
    def save_procedure(self, pk: int | None, order_pk: int, entry: ProcedureEntry, now: datetime) -> int: ...
    def save_step(
        self, pk: int | None, procedure_pk: int, step_id: str, status: str, columns: dict[str, str],
        attrs: dict[str, Any], now: datetime,
    ) -> int: ...  # fmt: skip
    def set_procedure_status(self, pk: int, status: str, source: str, now: datetime) -> bool: ...
    def add_status_history(self, pk: int, status: str, source: str, now: datetime) -> None: ...
    def procedure_history(self, pk: int) -> list[dict[str, Any]]: ...
    def procedure(self, pk: int) -> ProcedureRow | None: ...
    def procedures_for(
        self, accession: str, requested_procedure_id: str, order_pk: int | None
    ) -> list[ProcedureRow]: ...
    def steps(
        self, *, patient_id: str = "", date: str = "", modality: str = "", station_ae_title: str = "",
        statuses: Sequence[str] = (), limit: int = 1000,
    ) -> list[StepRow]: ...  # fmt: skip
    def set_step_status(self, pk: int, status: str, attrs: dict[str, Any], now: datetime) -> None: ...
    def add_report(
        self, entry: ReportEntry, order_pk: int | None, procedure_pk: int | None, sender: str,
        message_pk: int | None, now: datetime,
    ) -> int: ...  # fmt: skip
    def set_report_instance(self, pk: int, sop_instance_uid: str) -> None: ...
    def report(self, pk: int) -> ReportRow | None: ...
    def reports(
        self, *, accession: str = "", patient_id: str = "", procedure_pk: int | None = None, status: str = "",
        limit: int = 100, before: int | None = None,
    ) -> list[ReportRow]: ...  # fmt: skip


class IndexSession(Protocol):
    """One unit of work on the index."""

    @property
    def jobs(self) -> JobStore: ...
    @property
    def migration(self) -> MigrationStore: ...
    @property
    def commitments(self) -> CommitmentStore: ...
    @property
    def derived(self) -> DerivedStore: ...
    @property
    def hl7(self) -> Hl7MessageStore: ...
    @property
    def orders(self) -> OrderStore: ...
    @property
    def rules(self) -> RuleStore: ...

    @property
    def accounts(self) -> AccountStore: ...
    @property
    def reallocation(self) -> ReallocationStore: ...

    # -- ingest ------------------------------------------------------------------------
    def instance_brief(self, sop_instance_uid: str) -> InstanceBrief | None: ...
    def study(self, uid: str) -> StudyRow | None: ...
    def series(self, uid: str) -> SeriesRow | None: ...
    def series_context(self, uid: str) -> SeriesContext | None: ...
    def patient(self, pk: int) -> PatientRow: ...
    def identifiers(self, patient_pk: int) -> list[PatientIdentifier]: ...
    def patients_with_identifier(self, value: str) -> list[PatientRow]: ...
    def create_patient(self, attrs: dict[str, Any], now: datetime) -> int: ...
    def add_identifier(self, patient_pk: int, identifier: PatientIdentifier, now: datetime) -> None: ...
    def set_patient_attrs(self, pk: int, attrs: dict[str, Any], now: datetime) -> None: ...
    def create_study(self, patient_pk: int, attrs: dict[str, Any], now: datetime) -> int: ...
    def set_study_attrs(self, pk: int, attrs: dict[str, Any], now: datetime) -> None: ...
    def create_series(self, study_pk: int, attrs: dict[str, Any], source_ae_title: str, now: datetime) -> int: ...
    def set_series_attrs(self, pk: int, attrs: dict[str, Any], now: datetime) -> None: ...
    def insert_instances(self, rows: Sequence[NewInstance]) -> None: ...
    def replace_instance(self, pk: int, row: NewInstance) -> None: ...
    def add_counts(self, deltas: Sequence[CountDelta], now: datetime) -> None: ...
    def add_changes(self, changes: Sequence[ChangeRecord], now: datetime) -> None: ...
    def add_audit(self, records: Sequence[AuditRecord]) -> None: ...
    def flag_conflicts(self, conflicts: Sequence[Conflict], now: datetime) -> None: ...
    def add_pending_deletions(
        self, blobs: Sequence[tuple[BlobRef, str]], not_before: datetime, now: datetime
    ) -> None: ...

    # -- query and retrieve ------------------------------------------------------------
    def find(
        self, query: Query, *, fold_names: bool, limit: int | None = None, offset: int = 0
    ) -> Iterator[MatchRow]: ...
    def stored_instances(
        self,
        level: Level,
        uids: Sequence[str],
        *,
        hidden: bool = False,
        pk_range: tuple[int, int, Sequence[int]] | None = None,
    ) -> list[StoredInstance]:
        """The visible instances under studies, series or instances (with *hidden*, all of them);
        with *pk_range* (after, upto, extra keys), those with after < key <= upto or in extra."""
        ...

    def remove(self, level: Level, uid: str) -> Removal:
        """Delete a study, series or instance with what it contains (aggregates recomputed)."""
        ...

    # -- corrections (issue 4) ------------------------------------------------------------
    def set_study_patient(self, study_pk: int, patient_pk: int, now: datetime) -> None:
        """Attach a study to another patient (both patients' aggregates recomputed)."""
        ...

    def set_merged_into(self, patient_pk: int, target_pk: int | None, now: datetime) -> None: ...
    def replace_identifier(
        self, patient_pk: int, old: PatientIdentifier | None, new: PatientIdentifier | None, now: datetime
    ) -> None: ...
    def study_uids_of(self, patient_pk: int) -> list[str]: ...
    def instance_states(self, level: Level, uid: str) -> list[InstanceState]: ...
    def hidden_before(self, states: Sequence[str], before: datetime, limit: int) -> list[InstanceState]:
        """Instances hidden in one of *states* since before *before* (oldest first)."""
        ...

    def set_hidden(self, sop_instance_uids: Sequence[str], state: str | None, now: datetime) -> None:
        """Hide (a rejection code, "deleted") or show (None) instances; aggregates follow."""
        ...

    def counts_of(self, level: Level, pk: int) -> dict[str, int]: ...
    def add_operation(self, operation: Operation, actor: Actor, now: datetime) -> int: ...
    def operation(self, pk: int) -> Operation | None: ...
    def reset_operation_sequence(self) -> None:
        """New operations get keys after those inserted with their own (an index rebuild)."""
        ...

    def operations(self, limit: int, before_pk: int | None = None) -> list[Operation]: ...
    def later_operations(self, objects: Sequence[str], after_pk: int) -> list[int]:
        """Operations after *after_pk*, not undone, that touched any of *objects*."""
        ...

    def stats(self) -> Stats: ...
    def is_empty(self) -> bool:
        """Whether the index holds no instance at all."""
        ...

    def open_conflicts(self) -> list[Conflict]: ...
    def conflict(self, pk: int) -> tuple[Conflict, datetime | None] | None:
        """An identity conflict and when it was resolved (None: open)."""
        ...

    def set_conflict_resolved(self, pk: int, resolved_at: datetime | None) -> None: ...

    # -- change feed and audit ---------------------------------------------------------
    def changes_since(self, seq: int, limit: int) -> list[Change]: ...
    def last_change_seq(self) -> int: ...
    def checkpoint(self, consumer: str) -> int: ...
    def set_checkpoint(self, consumer: str, seq: int, now: datetime) -> None: ...
    def audit_entries(self, since_pk: int = 0, limit: int = 1000) -> list[dict[str, Any]]: ...
    def audit_since(self, actions: Sequence[str], since: datetime, limit: int) -> list[dict[str, Any]]:
        """Audit records of these actions since *since*, oldest first (resources, details parsed)."""
        ...

    # -- storage housekeeping ----------------------------------------------------------
    def due_deletions(self, now: datetime, limit: int) -> list[PendingDeletion]: ...
    def remove_pending_deletions(self, pks: Sequence[int]) -> None: ...
    def keys_in_use(self, store: str, keys: Sequence[str]) -> set[str]: ...
    def keys_pending(self, store: str, keys: Sequence[str]) -> set[str]: ...
    def all_locations(self, store: str, after_pk: int, limit: int) -> list[tuple[int, str, int]]: ...

    # -- nodes -------------------------------------------------------------------------
    def nodes(self) -> list[Node]: ...
    def node(self, name: str) -> Node | None: ...
    def node_by_ae_title(self, ae_title: str) -> Node | None: ...
    def add_node(self, node: Node, now: datetime) -> None: ...
    def update_node(self, name: str, node: Node, now: datetime) -> bool: ...
    def remove_node(self, name: str) -> bool: ...


class Index(Protocol):
    """A database holding the index."""

    @property
    def dialect(self) -> str: ...
    def session(self, *, write: bool = False, dedicated: bool = False) -> AbstractContextManager[IndexSession]:
        """A unit of work; *dedicated* keeps the connection of the calling thread open between units."""
        ...

    def try_lease(self, name: str, holder: str, ttl_seconds: float) -> bool: ...
    def release_lease(self, name: str, holder: str) -> None: ...
    def close(self) -> None: ...


def iter_chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """Split a long list of keys for IN clauses."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
