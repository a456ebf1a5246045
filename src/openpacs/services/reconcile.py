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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom import config as pydicom_config
from pydicom.valuerep import validate_value

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import Conflict, InvalidQuery, NotFound
from openpacs.domain.qa import Edit, EditKind, Operation, OperationKind, StateChanged
from openpacs.domain.records import Actor, Issuer, PatientIdentifier
from openpacs.domain.tags import Level, key, keyword_of, tag_of, vr_of
from openpacs.ports.index import IndexSession, PatientRow
from openpacs.services import qa_edits
from openpacs.services.provenance import left_the_archive, patient_provenance
from openpacs.services.qa_runner import NOUN
from openpacs.services.reallocate import ReallocationOps
from openpacs.services.rejection import RejectionOps

log = logging.getLogger(__name__)

PATIENT_ID = key("PatientID")
ISSUER = key("IssuerOfPatientID")
ISSUER_QUALIFIERS = key("IssuerOfPatientIDQualifiersSequence")
_NUMERIC = {"IS": int, "US": int, "UL": int, "SS": int, "SL": int, "UV": int, "SV": int, "DS": float, "FL": float,
            "FD": float}  # fmt: skip


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


class ReconcileService(RejectionOps, ReallocationOps):
    """Runs corrections; thread-safe, one transaction per operation."""

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
        provenance: str = "local",
    ) -> Operation:
        """Change a patient's demographics, and its Patient ID or issuer (the identifier moves too)."""
        self._check_keywords(Level.PATIENT, values)

        def plan(session: IndexSession) -> Operation:
            patient = self._patient(session, ref)
            target = {"level": "PATIENT", "pk": patient.pk}
            edits = self._attribute_edits(target, patient.attrs, values)
            new_attrs = dict(patient.attrs)
            for edit in edits:
                new_attrs = qa_edits.assigned(new_attrs, edit.key, edit.new)
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
            return Operation(
                OperationKind.UPDATE_PATIENT,
                reason,
                {"patient": str(ref), "set": values},
                edits,
                summary,
                source=provenance,
            )

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
        provenance: str = "local",
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
            return Operation(OperationKind.MERGE_PATIENTS, reason, params, edits, summary, source=provenance)

        return self._run(plan, actor, dry_run, resolves)

    def unmerge(
        self,
        source: PatientRef,
        actor: Actor,
        reason: str,
        *,
        dry_run: bool = False,
        resolves: Sequence[int] = (),
        provenance: str = "local",
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
            return Operation(
                OperationKind.UNMERGE,
                reason,
                {"source": str(source)},
                edits,
                summary,
                undo_of=merge.id,
                source=provenance,
            )

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
        provenance: str = "local",
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
            return Operation(OperationKind.MOVE_STUDY, reason, params, edits, summary, source=provenance)

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
            summary["left_the_archive"] = left_the_archive(session, original)
            params = {"operation": operation_id}
            return Operation(OperationKind.UNDO, reason, params, edits, summary, undo_of=operation_id)

        return self._run(plan, actor, dry_run)

    def provenance(self, ref: PatientRef) -> dict[str, Any]:
        """Where each of a patient's values comes from: the object, a local edit, or HL7."""
        with self._index.session() as session:
            patient = self._patient(session, ref)
            return {"patient": str(ref), "pk": patient.pk, "attributes": patient_provenance(session, patient.pk)}

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
                raise NotFound(f"no {NOUN[level]} {uid}")
            target = {"level": str(level), "uid": uid}
            edits = self._attribute_edits(target, row.attrs, values)
            summary = self._summary(session, level, row.pk, edits, uid)
            return Operation(kind, reason, {NOUN[level]: uid, "set": values}, edits, summary)

        return self._run(plan, actor, dry_run, resolves)

    def _check_keywords(self, level: Level, values: dict[str, str]) -> None:
        if not values:
            raise InvalidQuery("nothing to change: give at least one Keyword=Value")
        allowed = self._editable.of(level)
        refused = [k for k in values if k not in allowed]
        if refused:
            raise InvalidQuery(
                f"{', '.join(refused)} cannot be changed at {NOUN[level]} level "
                f"(editable: {', '.join(allowed)}; see qa.{NOUN[level]}_attributes)"
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

    def surviving(self, ref: PatientRef) -> PatientRef | None:
        """For a Patient ID that names only merged patients, the patient they were merged into
        (following the chain of merges); None when *ref* names a live patient or none."""
        with self._index.session() as session:
            try:
                self._patient(session, ref)
                return None
            except NotFound:
                pass
            try:
                row = self._patient(session, ref, merged=True)
            except (NotFound, Conflict):
                return None
            seen = {row.pk}
            while row.merged_into_pk is not None and row.merged_into_pk not in seen:
                seen.add(row.merged_into_pk)
                row = session.patient(row.merged_into_pk)
            identifier = _identifier_of(row.attrs)
            if identifier is None:
                return None
            return PatientRef(identifier.value, identifier.issuer.namespace)

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
