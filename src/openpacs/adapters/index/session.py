"""A unit of work on the SQL index (the IndexSession port)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openpacs.adapters.index import columns as cols
from openpacs.adapters.index import corrections, removal
from openpacs.adapters.index import statements as q
from openpacs.adapters.index import tables as t
from openpacs.adapters.index.accounts import Accounts
from openpacs.adapters.index.commitment import CommitmentTable, DerivedTable
from openpacs.adapters.index.fast import FastStatements, aware, json_value
from openpacs.adapters.index.hl7 import Hl7MessageTable
from openpacs.adapters.index.jobs import JobTable, RuleTable
from openpacs.adapters.index.migration import MigrationTable
from openpacs.adapters.index.orders import OrderTable
from openpacs.adapters.index.reading_lists import ReadingTable
from openpacs.adapters.index.reallocation import Reallocation
from openpacs.adapters.index.removal import Removed
from openpacs.adapters.index.search import find_rows, load_stored_instances
from openpacs.adapters.index.workflow import WorkflowTable
from openpacs.domain.matching import Query
from openpacs.domain.qa import Operation
from openpacs.domain.records import (
    Actor,
    BlobRef,
    Change,
    Issuer,
    Node,
    PatientIdentifier,
    Stats,
    StoredInstance,
)
from openpacs.domain.tags import Level, level_elements
from openpacs.ports.index import (
    AuditRecord,
    ChangeRecord,
    Conflict,
    CountDelta,
    InstanceBrief,
    InstanceState,
    MatchRow,
    NewInstance,
    PatientRow,
    PendingDeletion,
    SeriesContext,
    SeriesRow,
    StudyRow,
    iter_chunks,
)


class SqlIndexSession:
    """The IndexSession port over one SQLAlchemy connection in a transaction."""

    def __init__(self, connection: Connection, fast: FastStatements) -> None:
        self.connection = connection
        self._fast = fast
        self.accounts = Accounts(connection)
        self.reallocation = Reallocation(connection)
        self.jobs = JobTable(connection)
        self.rules = RuleTable(connection)
        self.migration = MigrationTable(connection)
        self.commitments = CommitmentTable(connection)
        self.derived = DerivedTable(connection)
        self.hl7 = Hl7MessageTable(connection, fast)
        self.orders = OrderTable(connection)
        self.workflow = WorkflowTable(connection)
        self.reading = ReadingTable(connection)

    def _run(self, statement: Any, values: dict[str, Any]) -> Any:
        return self._fast.execute(self.connection, statement, values)

    # -- ingest: reads ------------------------------------------------------------------

    def instance_brief(self, sop_instance_uid: str) -> InstanceBrief | None:
        rows = list(self._run(q.INSTANCE_BRIEF, {"b_uid": sop_instance_uid}))
        if not rows:
            return None
        row = min(rows, key=lambda r: r.moved_to is not None)  # the instance itself first
        return InstanceBrief(
            pk=row.pk,
            sop_instance_uid=sop_instance_uid,
            series_pk=row.series_pk,
            checksum=row.checksum,
            blob=BlobRef(row.store, row.key, row.size),
            transfer_syntax_uid=row.transfer_syntax_uid,
            hidden=row.rejection,
            moved_to=row.moved_to,
        )

    def study(self, uid: str) -> StudyRow | None:
        row = self._run(q.STUDY_BY_UID, {"b_uid": uid}).first()
        return None if row is None else StudyRow(row.pk, uid, row.patient_pk, json_value(row.attrs))

    def series_context(self, uid: str) -> SeriesContext | None:
        row = self._run(q.SERIES_CONTEXT, {"b_uid": uid}).first()
        if row is None:
            return None
        return SeriesContext(
            series=SeriesRow(row.series_pk, uid, row.study_pk, json_value(row.series_attrs)),
            study=StudyRow(
                row.study_pk,
                row.study_instance_uid,
                row.patient_pk,
                json_value(row.study_attrs),
                row.modalities_in_study,
                row.sop_classes_in_study,
            ),
            patient=PatientRow(row.patient_pk, json_value(row.patient_attrs), None, row.merged_into_pk),
        )

    def series(self, uid: str) -> SeriesRow | None:
        row = self._run(q.SERIES_BY_UID, {"b_uid": uid}).first()
        return None if row is None else SeriesRow(row.pk, uid, row.study_pk, json_value(row.attrs))

    def identifiers(self, patient_pk: int) -> list[PatientIdentifier]:
        return [
            PatientIdentifier(
                row.value,
                Issuer(row.issuer_namespace, row.issuer_universal_id, row.issuer_universal_id_type),
                row.type_code,
            )
            for row in self._run(q.IDENTIFIERS_OF, {"b_pk": patient_pk})
        ]

    def patient(self, pk: int) -> PatientRow:
        row = self._run(q.PATIENT_BY_PK, {"b_pk": pk}).one()
        return PatientRow(row.pk, json_value(row.attrs), self.identifiers(pk), row.merged_into_pk)

    def patients_with_identifier(self, value: str) -> list[PatientRow]:
        pks = [row[0] for row in self._run(q.PATIENTS_WITH_IDENTIFIER, {"b_value": value})]
        return [self.patient(pk) for pk in pks]

    # -- ingest: writes -----------------------------------------------------------------

    def create_patient(self, attrs: dict[str, Any], now: datetime) -> int:
        values = {"attrs": attrs, "created_at": now, "updated_at": now, **cols.patient_columns(attrs)}
        return int(self._run(q.INSERT_PATIENT, values).scalar_one())

    def add_identifier(self, patient_pk: int, identifier: PatientIdentifier, now: datetime) -> None:
        self._run(
            q.INSERT_IDENTIFIER,
            {
                "patient_pk": patient_pk,
                "value": identifier.value[:64],
                "issuer_namespace": identifier.issuer.namespace[:64],
                "issuer_universal_id": identifier.issuer.universal_id[:64],
                "issuer_universal_id_type": identifier.issuer.universal_id_type[:16],
                "type_code": identifier.type_code[:16],
                "created_at": now,
            },
        )

    def set_patient_attrs(self, pk: int, attrs: dict[str, Any], now: datetime) -> None:
        self._run(q.UPDATE_PATIENT, {"b_pk": pk, "attrs": attrs, "updated_at": now, **cols.patient_columns(attrs)})

    def create_study(self, patient_pk: int, attrs: dict[str, Any], now: datetime) -> int:
        values = {
            "study_instance_uid": cols_text(attrs, cols.STUDY_UID),
            "patient_pk": patient_pk,
            "attrs": attrs,
            "created_at": now,
            "updated_at": now,
            "last_instance_at": now,
            **cols.study_columns(attrs),
        }
        return int(self._run(q.INSERT_STUDY, values).scalar_one())

    def set_study_attrs(self, pk: int, attrs: dict[str, Any], now: datetime) -> None:
        self._run(q.UPDATE_STUDY, {"b_pk": pk, "attrs": attrs, "updated_at": now, **cols.study_columns(attrs)})

    def create_series(self, study_pk: int, attrs: dict[str, Any], source_ae_title: str, now: datetime) -> int:
        values = {
            "series_instance_uid": cols_text(attrs, cols.SERIES_UID),
            "study_pk": study_pk,
            "attrs": attrs,
            "source_ae_title": source_ae_title[:16],
            "created_at": now,
            "updated_at": now,
            **cols.series_columns(attrs),
        }
        pk = int(self._run(q.INSERT_SERIES, values).scalar_one())
        self._write_requests(pk, attrs)
        return pk

    def _write_requests(self, series_pk: int, attrs: dict[str, Any]) -> None:
        requests = cols.series_requests(attrs)
        if requests:
            self._fast.execute_many(
                self.connection, q.INSERT_SERIES_REQUEST, [{"series_pk": series_pk, **r} for r in requests]
            )

    def set_series_attrs(self, pk: int, attrs: dict[str, Any], now: datetime) -> None:
        self._run(q.UPDATE_SERIES, {"b_pk": pk, "attrs": attrs, "updated_at": now, **cols.series_columns(attrs)})
        self._run(q.DELETE_SERIES_REQUESTS, {"b_pk": pk})
        self._write_requests(pk, attrs)

    def insert_instances(self, rows: Sequence[NewInstance]) -> None:
        locations = []
        for r in rows:
            pk = self._run(
                q.INSERT_INSTANCE,
                {
                    "sop_instance_uid": r.sop_instance_uid,
                    "series_pk": r.series_pk,
                    "sop_class_uid": r.sop_class_uid,
                    "instance_number": r.instance_number,
                    "transfer_syntax_uid": r.transfer_syntax_uid,
                    "header": r.header,
                    "level_values": level_elements(r.header),
                    "source_ae_title": r.source_ae_title[:16],
                    "called_ae_title": r.called_ae_title[:16],
                    "received_at": r.received_at,
                },
            ).scalar_one()
            locations.append(
                {
                    "instance_pk": pk,
                    "store": r.blob.store,
                    "key": r.blob.key,
                    "size": r.blob.size,
                    "checksum": r.checksum,
                    "transfer_syntax_uid": r.transfer_syntax_uid,
                    "created_at": r.received_at,
                }
            )
        self._fast.execute_many(self.connection, q.INSERT_LOCATION, locations)

    def replace_instance(self, pk: int, row: NewInstance) -> None:
        self.connection.execute(
            sa.update(t.instance)
            .where(t.instance.c.pk == pk)
            .values(
                sop_class_uid=row.sop_class_uid,
                instance_number=row.instance_number,
                transfer_syntax_uid=row.transfer_syntax_uid,
                header=row.header,
                level_values=level_elements(row.header),
                source_ae_title=row.source_ae_title[:16],
                called_ae_title=row.called_ae_title[:16],
                received_at=row.received_at,
            )
        )
        self.connection.execute(sa.delete(t.location).where(t.location.c.instance_pk == pk))
        self._run(
            q.INSERT_LOCATION,
            {
                "instance_pk": pk,
                "store": row.blob.store,
                "key": row.blob.key,
                "size": row.blob.size,
                "checksum": row.checksum,
                "transfer_syntax_uid": row.transfer_syntax_uid,
                "created_at": row.received_at,
            },
        )

    def add_counts(self, deltas: Sequence[CountDelta], now: datetime) -> None:
        studies: dict[int, dict[str, Any]] = {}
        patients: dict[int, dict[str, Any]] = {}
        for d in deltas:
            if d.new_instances:
                self._run(q.BUMP_SERIES, {"b_pk": d.series_pk, "b_instances": d.new_instances, "b_now": now})
            study = studies.setdefault(
                d.study_pk,
                {
                    "known": None
                    if d.known_modalities is None or d.known_sop_classes is None
                    else (d.known_modalities, d.known_sop_classes),
                    "b_pk": d.study_pk,
                    "b_instances": 0,
                    "b_series": 0,
                    "b_size": 0,
                    "b_now": now,
                    "modalities": set(),
                    "sop_classes": set(),
                },
            )
            study["b_instances"] += d.new_instances
            study["b_series"] += d.new_series
            study["b_size"] += d.size_bytes
            study["modalities"] |= d.modalities
            study["sop_classes"] |= d.sop_classes
            patient = patients.setdefault(
                d.patient_pk, {"b_pk": d.patient_pk, "b_studies": 0, "b_series": 0, "b_instances": 0, "b_now": now}
            )
            patient["b_studies"] += d.new_studies
            patient["b_series"] += d.new_series
            patient["b_instances"] += d.new_instances
        for study in studies.values():
            modalities, sop_classes = study.pop("modalities"), study.pop("sop_classes")
            known = study.pop("known")
            self._run(q.BUMP_STUDY, study)
            if modalities or sop_classes:
                if known is None:
                    row = self._run(q.STUDY_AGGREGATES, {"b_pk": study["b_pk"]}).one()
                    known = (row.modalities_in_study, row.sop_classes_in_study)
                merged_modalities = _union(known[0], modalities)
                merged_sops = _union(known[1], sop_classes)
                if (merged_modalities, merged_sops) != known:
                    self._run(
                        q.UPDATE_STUDY,
                        {
                            "b_pk": study["b_pk"],
                            "modalities_in_study": merged_modalities,
                            "sop_classes_in_study": merged_sops,
                        },
                    )
        for patient in patients.values():
            self._run(q.BUMP_PATIENT, patient)

    def add_changes(self, changes: Sequence[ChangeRecord], now: datetime) -> None:
        """Append to the change feed with sequence numbers allocated under the counter's row lock.

        The lock is held until this transaction commits, so no later number can commit
        before an earlier one: readers see the feed in commit order (ARCHITECTURE.md 4).
        """
        if not changes:
            return
        last = self._run(q.NEXT_CHANGE_SEQ, {"b_count": len(changes)}).scalar_one()
        first = last - len(changes) + 1
        self._fast.execute_many(
            self.connection,
            q.INSERT_CHANGES,
            [
                {
                    "seq": first + n,
                    "change_type": c.change_type,
                    "level": str(c.level),
                    "resource": c.resource,
                    "time": now,
                }
                for n, c in enumerate(changes)
            ],
        )

    def add_audit(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        self._fast.execute_many(
            self.connection,
            q.INSERT_AUDIT,
            [
                {
                    "time": r.time,
                    "actor_type": str(r.actor.type),
                    "actor_id": r.actor.id[:200],
                    "actor_address": r.actor.address[:100],
                    "action": r.action,
                    "outcome": r.outcome,
                    "resources": r.resources,
                    "details": r.details,
                }
                for r in records
            ],
        )

    def flag_conflicts(self, conflicts: Sequence[Conflict], now: datetime) -> None:
        """Record conflicts; one already open for the same patient, study and disagreement is not repeated."""
        fresh: list[Conflict] = []
        for c in conflicts:
            if any(
                (f.kind, f.patient_pk, f.study_instance_uid, f.details)
                == (c.kind, c.patient_pk, c.study_instance_uid, c.details)
                for f in fresh
            ):
                continue
            open_details = [
                json_value(row[0])
                for row in self._run(
                    q.OPEN_CONFLICTS_LIKE,
                    {"b_kind": c.kind, "b_patient": c.patient_pk, "b_study": c.study_instance_uid},
                )
            ]
            if c.details not in open_details:
                fresh.append(c)
        if not fresh:
            return
        conflicts = fresh
        self._fast.execute_many(
            self.connection,
            q.INSERT_CONFLICT,
            [
                {
                    "kind": c.kind,
                    "patient_pk": c.patient_pk,
                    "study_instance_uid": c.study_instance_uid,
                    "sop_instance_uid": c.sop_instance_uid,
                    "details": c.details,
                    "created_at": now,
                }
                for c in conflicts
            ],
        )

    def add_pending_deletions(self, blobs: Sequence[tuple[BlobRef, str]], not_before: datetime, now: datetime) -> None:
        if not blobs:
            return
        self._fast.execute_many(
            self.connection,
            q.INSERT_PENDING_DELETION,
            [
                {"store": b.store, "key": b.key, "not_before": not_before, "reason": reason[:200], "created_at": now}
                for b, reason in blobs
            ],
        )

    # -- query and retrieve ----------------------------------------------------------------

    def find(self, query: Query, *, fold_names: bool, limit: int | None = None, offset: int = 0) -> Iterator[MatchRow]:
        return find_rows(self.connection, self._fast, query, fold_names=fold_names, limit=limit, offset=offset)

    def stored_instances(
        self,
        level: Level,
        uids: Sequence[str],
        *,
        hidden: bool = False,
        pk_range: tuple[int, int, Sequence[int]] | None = None,
    ) -> list[StoredInstance]:
        return load_stored_instances(self.connection, level, uids, hidden=hidden, pk_range=pk_range)

    def remove(self, level: Level, uid: str) -> Removed:
        return removal.remove(self.connection, level, uid)

    # -- corrections --------------------------------------------------------------------

    def set_study_patient(self, study_pk: int, patient_pk: int, now: datetime) -> None:
        corrections.set_study_patient(self.connection, study_pk, patient_pk, now)

    def set_merged_into(self, patient_pk: int, target_pk: int | None, now: datetime) -> None:
        corrections.set_merged_into(self.connection, patient_pk, target_pk, now)

    def replace_identifier(
        self, patient_pk: int, old: PatientIdentifier | None, new: PatientIdentifier | None, now: datetime
    ) -> None:
        corrections.replace_identifier(self.connection, patient_pk, old, new, now)

    def instance_states(self, level: Level, uid: str) -> list[InstanceState]:
        return corrections.instance_states(self.connection, level, uid)

    def hidden_before(self, states: Sequence[str], before: datetime, limit: int) -> list[InstanceState]:
        return corrections.hidden_before(self.connection, states, before, limit)

    def set_hidden(self, sop_instance_uids: Sequence[str], state: str | None, now: datetime) -> None:
        corrections.set_hidden(self.connection, sop_instance_uids, state, now)

    def study_uids_of(self, patient_pk: int) -> list[str]:
        return corrections.study_uids_of(self.connection, patient_pk)

    def counts_of(self, level: Level, pk: int) -> dict[str, int]:
        return corrections.counts_of(self.connection, str(level), pk)

    def add_operation(self, operation: Operation, actor: Actor, now: datetime) -> int:
        return corrections.add_operation(self.connection, operation, actor, now)

    def reset_operation_sequence(self) -> None:
        corrections.reset_operation_sequence(self.connection)

    def operation(self, pk: int) -> Operation | None:
        return corrections.operation(self.connection, pk)

    def operations(self, limit: int, before_pk: int | None = None) -> list[Operation]:
        return corrections.operations(self.connection, limit, before_pk)

    def later_operations(self, objects: Sequence[str], after_pk: int) -> list[int]:
        return corrections.later_operations(self.connection, objects, after_pk)

    def is_empty(self) -> bool:
        return self.connection.execute(sa.select(t.instance.c.pk).limit(1)).first() is None

    def stats(self) -> Stats:
        row = self.connection.execute(
            sa.select(
                sa.select(sa.func.count())
                .select_from(t.patient)
                .where(t.patient.c.merged_into_pk.is_(None))
                .scalar_subquery(),
                sa.select(sa.func.count()).select_from(t.study).scalar_subquery(),
                sa.select(sa.func.count()).select_from(t.series).scalar_subquery(),
                sa.select(sa.func.count()).select_from(t.instance).scalar_subquery(),
                sa.select(sa.func.coalesce(sa.func.sum(t.location.c.size), 0)).scalar_subquery(),
            )
        ).one()
        return Stats(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]))

    def open_conflicts(self) -> list[Conflict]:
        c = t.identity_conflict
        rows = self.connection.execute(sa.select(c).where(c.c.resolved_at.is_(None)).order_by(c.c.pk))
        return [
            Conflict(r.kind, r.patient_pk, r.study_instance_uid, r.sop_instance_uid, json_value(r.details), r.pk)
            for r in rows
        ]

    def conflict(self, pk: int) -> tuple[Conflict, datetime | None] | None:
        c = t.identity_conflict
        r = self.connection.execute(sa.select(c).where(c.c.pk == pk)).first()
        if r is None:
            return None
        found = Conflict(r.kind, r.patient_pk, r.study_instance_uid, r.sop_instance_uid, json_value(r.details), r.pk)
        return found, aware(r.resolved_at) if r.resolved_at is not None else None

    def set_conflict_resolved(self, pk: int, resolved_at: datetime | None) -> None:
        c = t.identity_conflict
        self.connection.execute(sa.update(c).where(c.c.pk == pk).values(resolved_at=resolved_at))

    # -- change feed and audit -------------------------------------------------------------

    def changes_since(self, seq: int, limit: int) -> list[Change]:
        c = t.changes
        rows = self.connection.execute(sa.select(c).where(c.c.seq > seq).order_by(c.c.seq).limit(limit))
        return [Change(r.seq, r.change_type, Level(r.level), r.resource, aware(r.time)) for r in rows]

    def last_change_seq(self) -> int:
        value = self.connection.execute(
            sa.select(t.change_counter.c.last_seq).where(t.change_counter.c.id == 1)
        ).scalar()
        return int(value or 0)

    def checkpoint(self, consumer: str) -> int:
        cp = t.consumer_checkpoint
        value = self.connection.execute(sa.select(cp.c.seq).where(cp.c.name == consumer)).scalar()
        return int(value or 0)

    def set_checkpoint(self, consumer: str, seq: int, now: datetime) -> None:
        cp = t.consumer_checkpoint
        updated = self.connection.execute(
            sa.update(cp).where(cp.c.name == consumer).values(seq=seq, updated_at=now)
        ).rowcount
        if not updated:
            self.connection.execute(sa.insert(cp).values(name=consumer, seq=seq, updated_at=now))

    def audit_since(self, actions: Sequence[str], since: datetime, limit: int) -> list[dict[str, Any]]:
        a = t.audit
        rows = self.connection.execute(
            sa.select(a).where(a.c.action.in_(list(actions)), a.c.time >= since).order_by(a.c.pk).limit(limit)
        )
        out = []
        for r in rows:
            entry = dict(r._mapping)
            entry["time"] = aware(entry["time"])
            entry["resources"], entry["details"] = json_value(entry["resources"]), json_value(entry["details"])
            out.append(entry)
        return out

    def audit_entries(self, since_pk: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        a = t.audit
        rows = self.connection.execute(sa.select(a).where(a.c.pk > since_pk).order_by(a.c.pk).limit(limit))
        return [dict(r._mapping) for r in rows]

    # -- storage housekeeping --------------------------------------------------------------

    def due_deletions(self, now: datetime, limit: int) -> list[PendingDeletion]:
        pd = t.pending_deletion
        rows = self.connection.execute(
            sa.select(pd).where(pd.c.not_before <= now).order_by(pd.c.not_before).limit(limit)
        )
        return [PendingDeletion(r.pk, r.store, r.key, aware(r.not_before), r.reason) for r in rows]

    def remove_pending_deletions(self, pks: Sequence[int]) -> None:
        if pks:
            self.connection.execute(sa.delete(t.pending_deletion).where(t.pending_deletion.c.pk.in_(list(pks))))

    def _keys_in(self, table: sa.Table, store: str, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in iter_chunks(keys):
            found.update(
                self.connection.execute(
                    sa.select(table.c.key).where(table.c.store == store, table.c.key.in_(list(chunk)))
                ).scalars()
            )
        return found

    def keys_in_use(self, store: str, keys: Sequence[str]) -> set[str]:
        return self._keys_in(t.location, store, keys)

    def keys_pending(self, store: str, keys: Sequence[str]) -> set[str]:
        return self._keys_in(t.pending_deletion, store, keys)

    def all_locations(self, store: str, after_pk: int, limit: int) -> list[tuple[int, str, int]]:
        loc = t.location
        rows = self.connection.execute(
            sa.select(loc.c.pk, loc.c.key, loc.c.size)
            .where(loc.c.store == store, loc.c.pk > after_pk)
            .order_by(loc.c.pk)
            .limit(limit)
        )
        return [(r.pk, r.key, r.size) for r in rows]

    # -- nodes -----------------------------------------------------------------------------

    @staticmethod
    def _node(row: Any) -> Node:
        return Node(
            name=row.name,
            ae_title=row.ae_title,
            host=row.host,
            port=row.port,
            allow_store=row.allow_store,
            allow_find=row.allow_find,
            allow_get=row.allow_get,
            allow_move_destination=row.allow_move_destination,
            check_host=row.check_host,
            default_issuer=row.default_issuer,
            description=row.description,
            max_associations=row.max_associations,
        )

    def nodes(self) -> list[Node]:
        return [self._node(r) for r in self.connection.execute(sa.select(t.node).order_by(t.node.c.name))]

    def node(self, name: str) -> Node | None:
        row = self.connection.execute(sa.select(t.node).where(t.node.c.name == name)).first()
        return None if row is None else self._node(row)

    def node_by_ae_title(self, ae_title: str) -> Node | None:
        row = self.connection.execute(sa.select(t.node).where(t.node.c.ae_title == ae_title)).first()
        return None if row is None else self._node(row)

    def add_node(self, node: Node, now: datetime) -> None:
        self.connection.execute(
            sa.insert(t.node).values(
                name=node.name,
                ae_title=node.ae_title,
                host=node.host,
                port=node.port,
                allow_store=node.allow_store,
                allow_find=node.allow_find,
                allow_get=node.allow_get,
                allow_move_destination=node.allow_move_destination,
                check_host=node.check_host,
                default_issuer=node.default_issuer,
                description=node.description,
                max_associations=node.max_associations,
                created_at=now,
                updated_at=now,
            )
        )

    def update_node(self, name: str, node: Node, now: datetime) -> bool:
        values = {
            "name": node.name,
            "ae_title": node.ae_title,
            "host": node.host,
            "port": node.port,
            "allow_store": node.allow_store,
            "allow_find": node.allow_find,
            "allow_get": node.allow_get,
            "allow_move_destination": node.allow_move_destination,
            "check_host": node.check_host,
            "default_issuer": node.default_issuer,
            "description": node.description,
            "max_associations": node.max_associations,
            "updated_at": now,
        }
        return bool(self.connection.execute(sa.update(t.node).where(t.node.c.name == name).values(values)).rowcount)

    def remove_node(self, name: str) -> bool:
        return bool(self.connection.execute(sa.delete(t.node).where(t.node.c.name == name)).rowcount)


def cols_text(attrs: dict[str, Any], key: str) -> str:
    """The first value of an attribute as text."""
    from openpacs.domain import dicom_json

    return dicom_json.text(attrs, key)


def _union(current: str, extra: set[str]) -> str:
    values = {v for v in current.split("\\") if v}
    values.update(v for v in extra if v)
    return "\\".join(sorted(values))
