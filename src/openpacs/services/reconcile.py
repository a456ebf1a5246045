"""ReconcileService: the administrator's corrections of identity, previewed, audited, undoable.

ARCHITECTURE.md section 3: a correction changes only the index (attribute sets, the
study-to-patient link, merge links, identifiers) in one transaction, with an audit
record, change-feed rows and a journal entry in the blob store; stored bytes never
change, and every outbound path coerces (with Original Attributes Sequence, PS3.3
C.12.1.1.9, on whole objects). Each operation is a list of reversible edits
(``domain/qa.py``): a dry run returns them without applying anything; undo applies
their inverses as a new operation, refused while later operations hold the objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydicom import config as pydicom_config
from pydicom.valuerep import validate_value

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import Conflict, InvalidQuery, NotFound
from openpacs.domain.qa import DELETED, NOTE, REJECTION_CODES, Edit, EditKind, Operation, OperationKind, StateChanged
from openpacs.domain.records import Actor, Issuer, Origin, PatientIdentifier, StoredInstance
from openpacs.domain.tags import Level, key, keyword_of, tag_of, vr_of
from openpacs.ports.blobstore import BlobStore
from openpacs.ports.index import AuditRecord, ChangeRecord, Index, IndexSession, InstanceState, PatientRow
from openpacs.services.ingest import IngestService
from openpacs.services.iocm import REJECTION_TRANSPORT, rejection_note

log = logging.getLogger(__name__)

PATIENT_ID = key("PatientID")
ISSUER = key("IssuerOfPatientID")
ISSUER_QUALIFIERS = key("IssuerOfPatientIDQualifiersSequence")
_NUMERIC = {"IS": int, "US": int, "UL": int, "SS": int, "SL": int, "UV": int, "SV": int, "DS": float, "FL": float,
            "FD": float}  # fmt: skip
_NOUN = {Level.STUDY: "study", Level.SERIES: "series", Level.IMAGE: "instance", Level.PATIENT: "patient"}
_LEVEL_NAMES = {Level.PATIENT: "patient", Level.STUDY: "study", Level.SERIES: "series"}


@dataclass(frozen=True)
class Editable:
    """The keywords an administrator may change at each level (settings ``qa.*``)."""

    patient: tuple[str, ...]
    study: tuple[str, ...]
    series: tuple[str, ...]

    def of(self, level: Level) -> tuple[str, ...]:
        return {Level.PATIENT: self.patient, Level.STUDY: self.study, Level.SERIES: self.series}[level]


@dataclass(frozen=True)
class PatientRef:
    """A patient named as an administrator names one: Patient ID, and its issuer where needed."""

    patient_id: str
    issuer: str | None = None

    def __str__(self) -> str:
        return self.patient_id if self.issuer is None else f"{self.patient_id} (issuer {self.issuer})"


def element_from_text(keyword: str, text: str) -> dict[str, Any]:
    """A DICOM JSON element (PS3.18 F.2) for a value typed by a person; '' gives an empty element.

    Values are checked against their VR (PS3.5 Table 6.2-1): a bad one raises InvalidQuery.
    """
    try:
        tag = tag_of(keyword)
    except (KeyError, ValueError) as exc:
        raise InvalidQuery(f"{keyword!r} is not a DICOM keyword") from exc
    vr = vr_of(tag)
    if text == "":
        return {"vr": vr}
    if vr == "SQ":
        raise InvalidQuery(f"{keyword} is a sequence; it cannot be set from text")
    parts = text.split("\\")
    for part in parts:
        try:
            validate_value(vr, part, pydicom_config.RAISE)
        except ValueError as exc:
            raise InvalidQuery(f"{keyword}: {exc}".split(" Please see")[0]) from exc
    if vr == "PN":
        groups = ("Alphabetic", "Ideographic", "Phonetic")
        return {"vr": vr, "Value": [{g: v for g, v in zip(groups, p.split("="), strict=False) if v} for p in parts]}
    if vr in _NUMERIC:
        try:
            return {"vr": vr, "Value": [_NUMERIC[vr](p) for p in parts]}
        except ValueError as exc:
            raise InvalidQuery(f"{keyword}: {text!r} is not a number") from exc
    return {"vr": vr, "Value": parts}


def _show(element: dict[str, Any] | None) -> str:
    return "" if not element else dj.multi_text({"x": element}, "x")


class ReconcileService:
    """Runs corrections; thread-safe, one transaction per operation."""

    def __init__(
        self,
        index: Index,
        blobs: BlobStore,
        ingest: IngestService,
        *,
        editable: Editable,
        clock: Callable[[], datetime],
        purge_after: timedelta = timedelta(days=30),
        deletion_grace: timedelta = timedelta(seconds=60),
    ) -> None:
        self._purge_after = purge_after
        self._deletion_grace = deletion_grace
        self._index = index
        self._blobs = blobs
        self._ingest = ingest
        self._editable = editable
        self._clock = clock

    # -- the operations ------------------------------------------------------------------

    def update_patient(
        self,
        ref: PatientRef,
        values: dict[str, str],
        actor: Actor,
        reason: str,
        *,
        dry_run: bool = False,
        resolves: Sequence[int] = (),
    ) -> Operation:
        """Change a patient's demographics, and its Patient ID or issuer (the identifier moves too)."""
        self._check_keywords(Level.PATIENT, values)

        def plan(session: IndexSession) -> Operation:
            patient = self._patient(session, ref)
            target = {"level": "PATIENT", "pk": patient.pk}
            edits = self._attribute_edits(target, patient.attrs, values)
            new_attrs = dict(patient.attrs)
            for edit in edits:
                _assign(new_attrs, edit.key, edit.new)
            old_id, new_id = _identifier_of(patient.attrs), _identifier_of(new_attrs)
            if old_id != new_id:
                if new_id is not None:
                    holder = self._holder(session, new_id)
                    if holder is not None and holder.pk != patient.pk:
                        raise Conflict(
                            f"Patient ID {new_id.value} is another patient's: merge the two patients instead"
                        )
                edits.append(Edit(EditKind.IDENTIFIER, target, _id_json(old_id), _id_json(new_id)))
            summary = self._summary(session, Level.PATIENT, patient.pk, edits, str(ref))
            return Operation(OperationKind.UPDATE_PATIENT, reason, {"patient": str(ref), "set": values}, edits, summary)

        return self._run(plan, actor, dry_run, resolves)

    def update_study(
        self,
        uid: str,
        values: dict[str, str],
        actor: Actor,
        reason: str,
        *,
        dry_run: bool = False,
        resolves: Sequence[int] = (),
    ) -> Operation:
        """Change study attributes (StudyDescription, AccessionNumber, ...): ``qa.study_attributes``."""
        return self._update_level(Level.STUDY, uid, values, actor, reason, dry_run, resolves)

    def update_series(
        self,
        uid: str,
        values: dict[str, str],
        actor: Actor,
        reason: str,
        *,
        dry_run: bool = False,
        resolves: Sequence[int] = (),
    ) -> Operation:
        """Change series attributes (SeriesDescription, BodyPartExamined, ...): ``qa.series_attributes``."""
        return self._update_level(Level.SERIES, uid, values, actor, reason, dry_run, resolves)

    def merge_patients(
        self,
        source: PatientRef,
        target: PatientRef,
        actor: Actor,
        reason: str,
        *,
        dry_run: bool = False,
        resolves: Sequence[int] = (),
    ) -> Operation:
        """Move every study of *source* to *target*; the source becomes a tombstone pointing to
        the target, so that objects arriving later with the source's ID land on the target."""

        def plan(session: IndexSession) -> Operation:
            src, dst = self._patient(session, source), self._patient(session, target)
            if src.pk == dst.pk:
                raise InvalidQuery("the source and the target are the same patient")
            edits = [
                Edit(EditKind.STUDY_PATIENT, {"level": "STUDY", "uid": uid}, src.pk, dst.pk)
                for uid in session.study_uids_of(src.pk)
            ]
            edits.append(Edit(EditKind.MERGED_INTO, {"level": "PATIENT", "pk": src.pk}, None, dst.pk))
            summary = self._summary(session, Level.PATIENT, src.pk, edits, str(source))
            summary["target"] = {"patient": str(target), "pk": dst.pk, "name": dj.text(dst.attrs, key("PatientName"))}
            params = {"source": str(source), "target": str(target)}
            return Operation(OperationKind.MERGE_PATIENTS, reason, params, edits, summary)

        return self._run(plan, actor, dry_run, resolves)

    def unmerge(
        self, source: PatientRef, actor: Actor, reason: str, *, dry_run: bool = False, resolves: Sequence[int] = ()
    ) -> Operation:
        """Undo the merge of *source* (a tombstone): its studies go back to it."""

        def plan(session: IndexSession) -> Operation:
            src = self._patient(session, source, merged=True)
            if src.merged_into_pk is None:
                raise Conflict(f"patient {source} is not merged into another")
            merge = next(
                (
                    op
                    for op in session.operations(1000)
                    if op.kind is OperationKind.MERGE_PATIENTS
                    and op.undone_by is None
                    and any(e.kind is EditKind.MERGED_INTO and e.target.get("pk") == src.pk for e in op.edits)
                ),
                None,
            )
            if merge is None:
                raise NotFound(f"no merge operation of patient {source} is on record")
            edits = [e.inverse() for e in reversed(merge.edits)]
            summary = self._summary(session, Level.PATIENT, src.pk, edits, str(source))
            summary["merge"] = merge.id
            return Operation(OperationKind.UNMERGE, reason, {"source": str(source)}, edits, summary, undo_of=merge.id)

        return self._run(plan, actor, dry_run, resolves)

    def move_study(
        self,
        uid: str,
        to_patient: PatientRef,
        actor: Actor,
        reason: str,
        *,
        dry_run: bool = False,
        resolves: Sequence[int] = (),
    ) -> Operation:
        """Attach a study to another patient (study reallocation; every UID kept)."""

        def plan(session: IndexSession) -> Operation:
            study = session.study(uid)
            if study is None:
                raise NotFound(f"no study {uid}")
            dst = self._patient(session, to_patient)
            if study.patient_pk == dst.pk:
                raise InvalidQuery(f"study {uid} already belongs to patient {to_patient}")
            edits = [Edit(EditKind.STUDY_PATIENT, {"level": "STUDY", "uid": uid}, study.patient_pk, dst.pk)]
            summary = self._summary(session, Level.STUDY, study.pk, edits, uid)
            source = session.patient(study.patient_pk)
            summary["from_patient"] = {"pk": source.pk, "patient_id": dj.text(source.attrs, PATIENT_ID)}
            summary["to_patient"] = {"pk": dst.pk, "patient_id": dj.text(dst.attrs, PATIENT_ID)}
            params = {"study": uid, "to_patient": str(to_patient)}
            return Operation(OperationKind.MOVE_STUDY, reason, params, edits, summary)

        return self._run(plan, actor, dry_run, resolves)

    def undo(
        self, operation_id: int, actor: Actor, reason: str, *, dry_run: bool = False, override: bool = False
    ) -> Operation:
        """A compensating operation; refused while later operations touched the same objects."""

        def plan(session: IndexSession) -> Operation:
            original = session.operation(operation_id)
            if original is None:
                raise NotFound(f"no operation {operation_id}")
            if original.kind is OperationKind.PURGE:
                raise Conflict(f"operation {operation_id} is a purge: what it removed is gone for good")
            if original.undone_by is not None:
                raise Conflict(f"operation {operation_id} was already undone by operation {original.undone_by}")
            if original.source == "hl7" and not override:
                raise Conflict(
                    f"operation {operation_id} came from HL7 (the ADT source owns identity): "
                    "undo it only with the override"
                )
            later = session.later_operations(original.objects(), operation_id)
            if later:
                raise StateChanged(
                    f"later operations touched the same objects: {', '.join(map(str, later))}; undo those first",
                    later,
                )
            edits = [e.inverse() for e in reversed(original.edits)]
            summary = dict(original.summary)
            summary["undoes"] = operation_id
            params = {"operation": operation_id}
            return Operation(OperationKind.UNDO, reason, params, edits, summary, undo_of=operation_id)

        return self._run(plan, actor, dry_run)

    def reject(
        self,
        level: Level,
        uid: str,
        code: str,
        actor: Actor,
        reason: str,
        *,
        dry_run: bool = False,
        resolves: Sequence[int] = (),
    ) -> Operation:
        """Reject a study, series or instance (IOCM): its instances leave every query and
        retrieval, and a rejection note (a Key Object Selection titled with *code*) is stored
        in the study, for peers. Undo shows them again and hides the note."""
        rejection = REJECTION_CODES.get(code)
        if rejection is None:
            raise InvalidQuery(f"rejection code {code!r} is not one of {', '.join(REJECTION_CODES)} (CID 7011)")
        if not reason.strip():
            raise InvalidQuery("a reason is required")
        visible = self._visible(level, uid)
        note: tuple[str, bytes] | None = None
        if not dry_run:
            note = rejection_note(visible, rejection, self._clock())
            self._ingest.store(note[1], Origin(actor=actor, transport=REJECTION_TRANSPORT, calling_ae=""))

        def plan(session: IndexSession) -> Operation:
            states = session.instance_states(level, uid)
            edits = self._hide_edits(states, level, uid, None, code, skip=note[0] if note else None)
            if note is not None:
                # like dcm4chee's, our rejection notes are for peers, not for clinical users:
                # hidden in the operation's transaction (undo leaves it: copies may have left)
                session.set_hidden([note[0]], NOTE, self._clock())
            summary = self._hide_summary(states, level, uid, edits, "rejected", code)
            summary["rejection_note"] = note[0] if note else "a Key Object Selection would be stored in the study"
            params = {"level": str(level), "uid": uid, "code": code}
            return Operation(OperationKind.REJECT, reason, params, edits, summary)

        try:
            return self._run(plan, actor, dry_run, resolves)
        except BaseException:
            if note is not None:
                self._withdraw(note[0])
            raise

    def delete(self, level: Level, uid: str, actor: Actor, reason: str, *, dry_run: bool = False) -> Operation:
        """Soft-delete a study, series or instance: hidden like a rejection, restorable
        (``restore`` or undo); the files stay until a purge."""
        self._visible(level, uid)

        def plan(session: IndexSession) -> Operation:
            states = session.instance_states(level, uid)
            edits = self._hide_edits(states, level, uid, None, DELETED)
            summary = self._hide_summary(states, level, uid, edits, "deleted", DELETED)
            return Operation(OperationKind.DELETE, reason, {"level": str(level), "uid": uid}, edits, summary)

        return self._run(plan, actor, dry_run)

    def restore(self, level: Level, uid: str, actor: Actor, reason: str, *, dry_run: bool = False) -> Operation:
        """Show again the rejected or soft-deleted instances of a study, series or instance.
        Rejection notes already stored (and perhaps sent to peers) stay: they are listed."""

        def plan(session: IndexSession) -> Operation:
            states = session.instance_states(level, uid)
            if not states:
                raise NotFound(f"no {_NOUN[level]} {uid}")
            notes = [s.sop_instance_uid for s in states if s.hidden == NOTE]
            edits = [
                Edit(EditKind.HIDDEN, {"level": "IMAGE", "uid": s.sop_instance_uid}, s.hidden, None)
                for s in states
                if s.hidden not in (None, NOTE)
            ]
            if not edits:
                raise InvalidQuery(f"nothing of {uid} is rejected or deleted")
            summary = self._hide_summary(states, level, uid, edits, "restored", None)
            summary["rejection_notes_kept"] = notes
            return Operation(OperationKind.RESTORE, reason, {"level": str(level), "uid": uid}, edits, summary)

        return self._run(plan, actor, dry_run)

    def dismiss_conflicts(
        self, conflicts: Sequence[int], actor: Actor, reason: str, *, dry_run: bool = False
    ) -> Operation:
        """Close identity conflicts of the inbox that need no correction (a nickname, say)."""
        if not conflicts:
            raise InvalidQuery("name at least one conflict of the inbox")

        def plan(session: IndexSession) -> Operation:
            summary: dict[str, Any] = {"level": "CONFLICT", "name": ", ".join(map(str, conflicts)), "changes": []}
            return Operation(OperationKind.DISMISS_CONFLICT, reason, {"conflicts": list(conflicts)}, [], summary)

        return self._run(plan, actor, dry_run, conflicts)

    def purge(self, actor: Actor, reason: str, *, dry_run: bool = False, limit: int = 100_000) -> Operation:
        """Remove for good the rejected and soft-deleted instances hidden for longer than
        ``qa.purge_after_days`` (113039, Data Retention Policy Expired, at once): their index
        rows go now, their files after ``storage.deletion_grace_seconds``. Final: no undo."""
        if not reason.strip():
            raise InvalidQuery("a reason is required")
        now = self._clock()
        with self._index.session(write=not dry_run) as session:
            due = session.hidden_before(
                [c for c in REJECTION_CODES if c != "113039"] + [DELETED], now - self._purge_after, limit
            )
            due += session.hidden_before(["113039"], now, limit)
            summary: dict[str, Any] = {
                "level": "IMAGE",
                "name": f"{len(due)} instances",
                "affected": {
                    "studies": len({s.study_instance_uid for s in due}),
                    "series": len({s.series_instance_uid for s in due}),
                    "instances": len(due),
                },
                "purged": [{"sop_instance_uid": s.sop_instance_uid, "hidden": s.hidden} for s in due[:1000]],
            }
            operation = Operation(
                OperationKind.PURGE, reason, {"purge_after_days": self._purge_after.days}, [], summary
            )
            if dry_run:
                return operation
            blobs = []
            for state in due:
                removed = session.remove(Level.IMAGE, state.sop_instance_uid)
                blobs.extend(removed.blobs)
            session.add_pending_deletions([(b, "purged") for b in blobs], now + self._deletion_grace, now)
            operation.id = session.add_operation(operation, actor, now)
            operation.actor, operation.created_at = actor, now
            session.add_changes([ChangeRecord("instance_deleted", Level.IMAGE, s.sop_instance_uid) for s in due], now)
            record = self._audit(operation, actor, now)
            record.resources.extend({"level": "IMAGE", "uid": s.sop_instance_uid} for s in due[:100])
            session.add_audit([record])
            self._journal(operation, now)
        log.info("purge %d by %s removed %d instances: %s", operation.id, actor.id, len(due), reason)
        return operation

    def hidden(self, level: Level, uid: str) -> list[dict[str, Any]]:
        """What administrators see and clinical users do not: the hidden instances of a study,
        series or instance, with why (a rejection code, "deleted", or "rejection-note")."""
        with self._index.session() as session:
            states = session.instance_states(level, uid)
        if not states:
            raise NotFound(f"no {_NOUN[level]} {uid}")
        return [
            {
                "sop_instance_uid": s.sop_instance_uid,
                "sop_class_uid": s.sop_class_uid,
                "series_instance_uid": s.series_instance_uid,
                "study_instance_uid": s.study_instance_uid,
                "hidden": s.hidden,
                "meaning": REJECTION_CODES[s.hidden].meaning if s.hidden in REJECTION_CODES else s.hidden,
            }
            for s in states
            if s.hidden is not None
        ]

    def inbox(self) -> list[dict[str, Any]]:
        """The open identity conflicts flagged at ingest, each with its patient spelled out."""
        with self._index.session() as session:
            out = []
            for conflict in session.open_conflicts():
                entry: dict[str, Any] = {
                    "id": conflict.pk,
                    "kind": conflict.kind,
                    "study_instance_uid": conflict.study_instance_uid,
                    "sop_instance_uid": conflict.sop_instance_uid,
                    "details": conflict.details,
                }
                if conflict.patient_pk is not None:
                    patient = session.patient(conflict.patient_pk)
                    entry["patient"] = {
                        "pk": patient.pk,
                        "patient_id": dj.text(patient.attrs, PATIENT_ID),
                        "name": dj.text(patient.attrs, key("PatientName")),
                        "birth_date": dj.text(patient.attrs, key("PatientBirthDate")),
                        "identifiers": [str(i) for i in patient.identifiers or []],
                        "merged_into_pk": patient.merged_into_pk,
                    }
                out.append(entry)
            return out

    def operation(self, operation_id: int) -> Operation:
        with self._index.session() as session:
            found = session.operation(operation_id)
        if found is None:
            raise NotFound(f"no operation {operation_id}")
        return found

    def operations(self, limit: int = 100, before: int | None = None) -> list[Operation]:
        with self._index.session() as session:
            return session.operations(max(1, min(limit, 1000)), before)

    # -- planning helpers ------------------------------------------------------------------

    def _visible(self, level: Level, uid: str) -> list[StoredInstance]:
        with self._index.session() as session:
            found = session.stored_instances(level, [uid])
        if not found:
            raise NotFound(f"no visible {_NOUN[level]} {uid}")
        return found

    @staticmethod
    def _hide_edits(
        states: list[InstanceState], level: Level, uid: str, old: str | None, new: str, skip: str | None = None
    ) -> list[Edit]:
        edits = [
            Edit(EditKind.HIDDEN, {"level": "IMAGE", "uid": s.sop_instance_uid}, old, new)
            for s in states
            if s.hidden == old and s.sop_instance_uid != skip
        ]
        if not edits:
            raise NotFound(f"no visible {_NOUN[level]} {uid}")
        return edits

    @staticmethod
    def _hide_summary(
        states: list[InstanceState], level: Level, uid: str, edits: list[Edit], verb: str, state: str | None
    ) -> dict[str, Any]:
        by_uid = {s.sop_instance_uid: s for s in states}
        touched = [by_uid[e.target["uid"]] for e in edits if e.target["uid"] in by_uid]
        return {
            "level": str(level),
            "name": uid,
            "affected": {
                "studies": len({s.study_instance_uid for s in touched}),
                "series": len({s.series_instance_uid for s in touched}),
                "instances": len(touched),
            },
            "changes": [{"object": f"{level}:{uid}", verb: len(touched), "state": state}],
        }

    def _withdraw(self, sop_instance_uid: str) -> None:
        """Remove a rejection note whose operation did not commit."""
        try:
            now = self._clock()
            with self._index.session(write=True) as session:
                removed = session.remove(Level.IMAGE, sop_instance_uid)
                session.add_pending_deletions([(b, "rejection note withdrawn") for b in removed.blobs], now, now)
        except Exception:
            log.exception("could not withdraw rejection note %s", sop_instance_uid)

    def _update_level(
        self,
        level: Level,
        uid: str,
        values: dict[str, str],
        actor: Actor,
        reason: str,
        dry_run: bool,
        resolves: Sequence[int],
    ) -> Operation:
        self._check_keywords(level, values)
        kind = OperationKind.UPDATE_STUDY if level is Level.STUDY else OperationKind.UPDATE_SERIES

        def plan(session: IndexSession) -> Operation:
            row = session.study(uid) if level is Level.STUDY else session.series(uid)
            if row is None:
                raise NotFound(f"no {_LEVEL_NAMES[level]} {uid}")
            target = {"level": str(level), "uid": uid}
            edits = self._attribute_edits(target, row.attrs, values)
            summary = self._summary(session, level, row.pk, edits, uid)
            return Operation(kind, reason, {_LEVEL_NAMES[level]: uid, "set": values}, edits, summary)

        return self._run(plan, actor, dry_run, resolves)

    def _check_keywords(self, level: Level, values: dict[str, str]) -> None:
        if not values:
            raise InvalidQuery("nothing to change: give at least one Keyword=Value")
        allowed = self._editable.of(level)
        refused = [k for k in values if k not in allowed]
        if refused:
            raise InvalidQuery(
                f"{', '.join(refused)} cannot be changed at {_LEVEL_NAMES[level]} level "
                f"(editable: {', '.join(allowed)}; see qa.{_LEVEL_NAMES[level]}_attributes)"
            )

    @staticmethod
    def _attribute_edits(target: dict[str, Any], attrs: dict[str, Any], values: dict[str, str]) -> list[Edit]:
        edits = []
        for keyword, text in values.items():
            tag = key(keyword)
            new = element_from_text(keyword, text)
            old = attrs.get(tag)
            if not dj.element_equal(old, new):
                edits.append(Edit(EditKind.ATTRIBUTE, target, old, new, tag))
        if not edits:
            raise InvalidQuery("the values given are those the index already holds: nothing to change")
        return edits

    def _patient(self, session: IndexSession, ref: PatientRef, *, merged: bool = False) -> PatientRow:
        """The one patient *ref* names (raises NotFound, or Conflict when it is ambiguous)."""
        found = []
        for row in session.patients_with_identifier(ref.patient_id):
            identifiers = row.identifiers or []
            if any(
                i.value == ref.patient_id and (ref.issuer is None or i.issuer.namespace == ref.issuer)
                for i in identifiers
            ):
                found.append(row)
        if not merged:
            found = [row for row in found if row.merged_into_pk is None]
        if not found:
            state = " merged" if merged else ""
            raise NotFound(f"no{state} patient with Patient ID {ref}")
        if len(found) > 1:
            issuers = sorted({i.issuer.namespace for row in found for i in row.identifiers or []})
            raise Conflict(f"Patient ID {ref.patient_id} names several patients: give the issuer ({issuers})")
        return found[0]

    @staticmethod
    def _holder(session: IndexSession, identifier: PatientIdentifier) -> PatientRow | None:
        for row in session.patients_with_identifier(identifier.value):
            if any(identifier.same_as(i) for i in row.identifiers or []):
                return row
        return None

    @staticmethod
    def _summary(session: IndexSession, level: Level, pk: int, edits: list[Edit], name: str) -> dict[str, Any]:
        """What a reader checks before confirming: the object, what it holds, old -> new values."""
        changes: list[dict[str, Any]] = []
        for edit in edits:
            if edit.kind is EditKind.ATTRIBUTE:
                changes.append(
                    {
                        "object": edit.object_key(),
                        "attribute": keyword_of(int(edit.key, 16)),
                        "old": _show(edit.old),
                        "new": _show(edit.new),
                    }
                )
            elif edit.kind is EditKind.IDENTIFIER:
                changes.append({"object": edit.object_key(), "identifier": True, "old": edit.old, "new": edit.new})
            elif edit.kind is EditKind.STUDY_PATIENT:
                changes.append({"object": edit.object_key(), "patient_pk": {"old": edit.old, "new": edit.new}})
            else:
                changes.append({"object": edit.object_key(), "merged_into_pk": {"old": edit.old, "new": edit.new}})
        return {
            "level": str(level),
            "name": name,
            "affected": session.counts_of(level, pk),
            "changes": changes,
        }

    # -- applying ------------------------------------------------------------------------

    def _run(
        self,
        plan: Callable[[IndexSession], Operation],
        actor: Actor,
        dry_run: bool,
        resolves: Sequence[int] = (),
    ) -> Operation:
        if dry_run:
            with self._index.session() as session:
                operation = self._planned(session, plan, resolves)
                self._check(session, operation.edits)
            return operation
        now = self._clock()
        with self._index.session(write=True) as session:
            operation = self._planned(session, plan, resolves)
            if not operation.reason.strip():
                raise InvalidQuery("a reason is required")
            self._check(session, operation.edits)
            for edit in operation.edits:
                self._apply(session, edit, now)
            operation.id = session.add_operation(operation, actor, now)
            operation.actor, operation.created_at = actor, now
            session.add_changes(list(_changes(session, operation)), now)
            session.add_audit([self._audit(operation, actor, now)])
            # the journal entry is durable before the transaction commits (ARCHITECTURE.md 3)
            self._journal(operation, now)
        log.info("operation %d %s by %s: %s", operation.id, operation.kind, actor.id, operation.reason)
        return operation

    @staticmethod
    def _planned(
        session: IndexSession, plan: Callable[[IndexSession], Operation], resolves: Sequence[int]
    ) -> Operation:
        """The operation *plan* makes, closing the inbox conflicts it *resolves*."""
        operation = plan(session)
        for pk in dict.fromkeys(resolves):
            found = session.conflict(pk)
            if found is None:
                raise NotFound(f"no identity conflict {pk} in the inbox")
            if found[1] is not None:
                raise Conflict(f"identity conflict {pk} is already resolved")
            edit = Edit(EditKind.CONFLICT, {"level": "CONFLICT", "pk": pk}, None, "resolved")
            operation.edits.append(edit)
            operation.summary.setdefault("changes", []).append(
                {"object": edit.object_key(), "conflict": {"old": "open", "new": "resolved"}}
            )
        if resolves:
            operation.params["resolves"] = list(dict.fromkeys(resolves))
        return operation

    def _check(self, session: IndexSession, edits: Iterable[Edit]) -> None:
        """Every edit finds its object in the state it expects (simulated in order)."""
        state: dict[tuple[str, str, str], Any] = {}
        for edit in edits:
            slot = (edit.object_key(), str(edit.kind), edit.key)
            current = state[slot] if slot in state else self._current(session, edit)
            if not _same(edit.kind, current, edit.old):
                what = keyword_of(int(edit.key, 16)) if edit.key else str(edit.kind)
                raise StateChanged(f"{edit.object_key()} has changed since: its {what} is no longer {edit.old!r}")
            state[slot] = edit.new

    @staticmethod
    def _current(session: IndexSession, edit: Edit) -> Any:
        target = edit.target
        level = target["level"]
        if edit.kind is EditKind.CONFLICT:
            found = session.conflict(int(target["pk"]))
            if found is None:
                raise StateChanged(f"identity conflict {target['pk']} no longer exists")
            return None if found[1] is None else "resolved"
        if edit.kind is EditKind.HIDDEN:
            states = session.instance_states(Level.IMAGE, target["uid"])
            if not states:
                raise StateChanged(f"instance {target['uid']} no longer exists")
            return states[0].hidden
        if edit.kind is EditKind.STUDY_PATIENT:
            study = session.study(target["uid"])
            if study is None:
                raise StateChanged(f"study {target['uid']} no longer exists")
            return study.patient_pk
        if level == "PATIENT":
            patient = session.patient(int(target["pk"]))
            if edit.kind is EditKind.MERGED_INTO:
                return patient.merged_into_pk
            if edit.kind is EditKind.IDENTIFIER:
                # the identifier the edit replaces must still be the patient's
                return edit.old if edit.old is None or _has_identifier(patient, edit.old) else "not held"
            return patient.attrs.get(edit.key)
        row = session.study(target["uid"]) if level == "STUDY" else session.series(target["uid"])
        if row is None:
            raise StateChanged(f"{level.lower()} {target['uid']} no longer exists")
        return row.attrs.get(edit.key)

    @staticmethod
    def _apply(session: IndexSession, edit: Edit, now: datetime) -> None:
        target = edit.target
        level = target["level"]
        if edit.kind is EditKind.CONFLICT:
            session.set_conflict_resolved(int(target["pk"]), now if edit.new else None)
        elif edit.kind is EditKind.HIDDEN:
            session.set_hidden([target["uid"]], edit.new, now)
        elif edit.kind is EditKind.STUDY_PATIENT:
            study = session.study(target["uid"])
            assert study is not None  # checked
            session.set_study_patient(study.pk, int(edit.new), now)
        elif edit.kind is EditKind.MERGED_INTO:
            session.set_merged_into(int(target["pk"]), edit.new, now)
        elif edit.kind is EditKind.IDENTIFIER:
            session.replace_identifier(int(target["pk"]), _id_from_json(edit.old), _id_from_json(edit.new), now)
        elif level == "PATIENT":
            patient = session.patient(int(target["pk"]))
            session.set_patient_attrs(patient.pk, _assigned(patient.attrs, edit.key, edit.new), now)
        elif level == "STUDY":
            study = session.study(target["uid"])
            assert study is not None
            session.set_study_attrs(study.pk, _assigned(study.attrs, edit.key, edit.new), now)
        else:
            series = session.series(target["uid"])
            assert series is not None
            session.set_series_attrs(series.pk, _assigned(series.attrs, edit.key, edit.new), now)

    @staticmethod
    def _audit(operation: Operation, actor: Actor, now: datetime) -> AuditRecord:
        resources = []
        for object_key in operation.objects()[:100]:
            level, _, name = object_key.partition(":")
            resources.append({"level": level, ("uid" if level in ("STUDY", "SERIES") else "pk"): name})
        return AuditRecord(
            time=now,
            actor=actor,
            action=f"qa-{operation.kind}",
            outcome="success",
            resources=resources,
            details={
                "operation": operation.id,
                "reason": operation.reason,
                "params": operation.params,
                "before_after": [e.to_json() for e in operation.edits],
            },
        )

    def _journal(self, operation: Operation, now: datetime) -> None:
        record = orjson.dumps(
            {"journal": "openpacs-qa", "version": 1, **operation.to_json()}, option=orjson.OPT_SORT_KEYS
        )
        self._blobs.put(f"journal/{now:%Y/%m/%d}/{operation.id:012d}.json", record)


def _changes(session: IndexSession, operation: Operation) -> Iterable[ChangeRecord]:
    seen = set()
    for edit in operation.edits:
        target = edit.target
        if edit.kind is EditKind.CONFLICT:
            continue  # the inbox is not a resource of the change feed
        if edit.kind is EditKind.HIDDEN:
            change = "instance_hidden" if edit.new is not None else "instance_shown"
            record = ChangeRecord(change, Level.IMAGE, str(target["uid"]))
        elif target["level"] == "PATIENT":
            record = ChangeRecord("patient_updated", Level.PATIENT, str(target["pk"]))
        elif target["level"] == "STUDY":
            record = ChangeRecord("study_updated", Level.STUDY, str(target["uid"]))
        else:
            record = ChangeRecord("series_updated", Level.SERIES, str(target["uid"]))
        if record not in seen:
            seen.add(record)
            yield record
        if edit.kind is EditKind.STUDY_PATIENT:
            for pk in (edit.old, edit.new):
                extra = ChangeRecord("patient_updated", Level.PATIENT, str(pk))
                if extra not in seen:
                    seen.add(extra)
                    yield extra


def _assign(attrs: dict[str, Any], tag: str, element: dict[str, Any] | None) -> None:
    if element is None:
        attrs.pop(tag, None)
    else:
        attrs[tag] = element


def _assigned(attrs: dict[str, Any], tag: str, element: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(attrs)
    _assign(out, tag, element)
    return out


def _same(kind: EditKind, current: Any, expected: Any) -> bool:
    if kind is EditKind.ATTRIBUTE:
        return dj.element_equal(current, expected)
    return bool(current == expected)


def _identifier_of(attrs: dict[str, Any]) -> PatientIdentifier | None:
    value = dj.text(attrs, PATIENT_ID).strip()
    if not value:
        return None
    qualifiers = dj.items(attrs, ISSUER_QUALIFIERS)
    q = qualifiers[0] if qualifiers else {}
    issuer = Issuer(
        dj.text(attrs, ISSUER).strip(),
        dj.text(q, key("UniversalEntityID")).strip(),
        dj.text(q, key("UniversalEntityIDType")).strip(),
    )
    return PatientIdentifier(value, issuer)


def _id_json(identifier: PatientIdentifier | None) -> dict[str, str] | None:
    if identifier is None:
        return None
    issuer = identifier.issuer
    return {
        "value": identifier.value,
        "issuer": issuer.namespace,
        "universal_id": issuer.universal_id,
        "universal_id_type": issuer.universal_id_type,
    }


def _id_from_json(data: dict[str, str] | None) -> PatientIdentifier | None:
    if data is None:
        return None
    return PatientIdentifier(
        data["value"], Issuer(data.get("issuer", ""), data.get("universal_id", ""), data.get("universal_id_type", ""))
    )


def _has_identifier(patient: PatientRow, data: dict[str, str] | None) -> bool:
    wanted = _id_from_json(data)
    if wanted is None:
        return False
    return any(wanted.same_as(i) for i in patient.identifiers or [])
