"""Attaching an incoming object to a patient, a study and a series (ADR 0002).

Order of attachment: the object's Study Instance UID if the index knows it, else its
patient identifier (value + issuer), else a new patient. Index demographics are
authoritative: an object never overwrites them; it may only fill values the index
lacks. Disagreements are stored as identity conflicts for reconciliation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import InvalidInstance
from openpacs.domain.names import dates_disagree, names_disagree
from openpacs.domain.records import Issuer, PatientIdentifier
from openpacs.domain.tags import LEVEL_KEYS, Level, key
from openpacs.ports.index import Conflict, IndexSession, PatientRow, SeriesRow, StudyRow
from openpacs.services.commit import Batch

PATIENT_ID = key("PatientID")
ISSUER = key("IssuerOfPatientID")
ISSUER_QUALIFIERS = key("IssuerOfPatientIDQualifiersSequence")
UNIVERSAL_ID = key("UniversalEntityID")
UNIVERSAL_ID_TYPE = key("UniversalEntityIDType")
TYPE_CODE = key("IdentifierTypeCode")
OTHER_IDS = key("OtherPatientIDsSequence")
PATIENT_NAME = key("PatientName")
BIRTH_DATE = key("PatientBirthDate")
MODALITY = key("Modality")


def level_attrs(header: dict[str, Any], level: Level) -> dict[str, Any]:
    """The attributes of one level found in an instance header."""
    keys = LEVEL_KEYS[level]
    return {k: v for k, v in header.items() if k in keys}


def _issuer_of(ds: dict[str, Any]) -> Issuer:
    qualifiers = dj.items(ds, ISSUER_QUALIFIERS)
    q = qualifiers[0] if qualifiers else {}
    return Issuer(dj.text(ds, ISSUER).strip(), dj.text(q, UNIVERSAL_ID).strip(), dj.text(q, UNIVERSAL_ID_TYPE).strip())


def identifiers_of(
    header: dict[str, Any], default_issuer: Issuer
) -> tuple[PatientIdentifier | None, list[PatientIdentifier]]:
    """The primary identifier (Patient ID + issuer) and the Other Patient IDs of an object."""
    value = dj.text(header, PATIENT_ID).strip()
    primary = None
    if value:
        issuer = _issuer_of(header)
        qualifiers = dj.items(header, ISSUER_QUALIFIERS)
        type_code = dj.text(qualifiers[0], TYPE_CODE) if qualifiers else ""
        primary = PatientIdentifier(value, default_issuer if issuer.is_empty else issuer, type_code)
    others = []
    for item in dj.items(header, OTHER_IDS):
        other = dj.text(item, PATIENT_ID).strip()
        if other:
            issuer = _issuer_of(item)
            others.append(PatientIdentifier(other, default_issuer if issuer.is_empty else issuer))
    return primary, others


@dataclass
class Attachment:
    """Where an object belongs, and what was created or flagged on the way."""

    patient_pk: int
    study_pk: int
    series_pk: int
    new_patient: bool = False
    new_study: bool = False
    new_series: bool = False
    conflicts: list[Conflict] = field(default_factory=list)
    study: StudyRow | None = None


def _with_default_issuer(attrs: dict[str, Any], issuer: Issuer) -> dict[str, Any]:
    if issuer.is_empty or dj.text(attrs, ISSUER) or dj.items(attrs, ISSUER_QUALIFIERS):
        return attrs
    if not dj.text(attrs, PATIENT_ID):
        return attrs
    filled = dict(attrs)
    if issuer.namespace:
        filled[ISSUER] = {"vr": "LO", "Value": [issuer.namespace]}
    if issuer.universal_id:
        filled[ISSUER_QUALIFIERS] = {
            "vr": "SQ",
            "Value": [
                {
                    UNIVERSAL_ID: {"vr": "UT", "Value": [issuer.universal_id]},
                    UNIVERSAL_ID_TYPE: {"vr": "CS", "Value": [issuer.universal_id_type]},
                }
            ],
        }
    return filled


def supplement(current: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any] | None:
    """The set with the values it lacks filled from *incoming*, or None when nothing is added."""
    added = {k: v for k, v in incoming.items() if v.get("Value") and not (current.get(k) or {}).get("Value")}
    if not added:
        return None
    return {**current, **added}


class Attacher:
    """Resolves patient, study and series for one object inside a unit of work."""

    def __init__(self, session: IndexSession, batch: Batch) -> None:
        self.session = session
        self.batch = batch

    def _follow(self, patient: PatientRow) -> PatientRow:
        """The patient itself, or the one it was merged into (a later issue merges)."""
        cached = self.batch.patients.setdefault(patient.pk, patient)
        while cached.merged_into_pk is not None:
            cached = self._patient(cached.merged_into_pk)
        return cached

    def _patient(self, pk: int) -> PatientRow:
        found = self.batch.patients.get(pk)
        if found is None:
            found = self.batch.patients[pk] = self.session.patient(pk)
        return self._follow(found)

    def _identifiers(self, patient: PatientRow) -> list[PatientIdentifier]:
        if patient.identifiers is None:
            patient.identifiers = self.session.identifiers(patient.pk)
        return patient.identifiers

    def _holds(self, patient: PatientRow, identifier: PatientIdentifier) -> bool:
        """Whether the patient has this identifier (its attribute set's Patient ID first: no query)."""
        own = dj.text(patient.attrs, PATIENT_ID).strip()
        if own and identifier.same_as(PatientIdentifier(own, _issuer_of(patient.attrs))):
            return True
        return any(identifier.same_as(i) for i in self._identifiers(patient))

    def _owner(self, identifier: PatientIdentifier) -> PatientRow | None:
        for row in self.session.patients_with_identifier(identifier.value):
            if any(identifier.same_as(i) for i in self._identifiers(row)):
                return self._patient(row.pk)
        for row in self.batch.patients.values():
            if row.identifiers and any(identifier.same_as(i) for i in row.identifiers):
                return row
        return None

    def _add_identifier(self, patient: PatientRow, identifier: PatientIdentifier) -> None:
        self.session.add_identifier(patient.pk, identifier, self.batch.now)
        self._identifiers(patient).append(identifier)

    def _known_series(self, series_uid: str) -> tuple[SeriesRow, StudyRow, PatientRow] | None:
        batch = self.batch
        series = batch.series.get(series_uid)
        if series is not None:
            study = next(s for s in batch.studies.values() if s.pk == series.study_pk)
            return series, study, self._patient(study.patient_pk)
        context = self.session.series_context(series_uid)
        if context is None:
            # a series reallocated under a new UID: what arrives for it later follows it
            alias = self.session.reallocation.alias_of(series_uid)
            if alias is None or alias[0] != "SERIES":
                return None
            context = self.session.series_context(alias[1])
            if context is None:
                return None
        study = batch.studies.setdefault(context.study.uid, context.study)
        batch.series[series_uid] = context.series
        return context.series, study, self._follow(context.patient)

    def attach(
        self, header: dict[str, Any], sop_instance_uid: str, default_issuer: Issuer, source_ae: str
    ) -> Attachment:
        """Find or create the patient, study and series of an object (ADR 0002)."""
        session, batch, now = self.session, self.batch, self.batch.now
        study_uid = dj.text(header, key("StudyInstanceUID"))
        series_uid = dj.text(header, key("SeriesInstanceUID"))
        primary, others = identifiers_of(header, default_issuer)
        patient_attrs = _with_default_issuer(level_attrs(header, Level.PATIENT), default_issuer)
        conflicts: list[Conflict] = []
        new_patient = new_study = new_series = False

        known = self._known_series(series_uid)
        series: SeriesRow | None = None
        if known is not None:
            series, study, patient = known
            if study.uid != study_uid and series.uid == series_uid:
                raise InvalidInstance(
                    f"Series Instance UID {series_uid} already belongs to study {study.uid}, not {study_uid}"
                )
        else:
            found = batch.studies.get(study_uid)
            if found is None:
                # a study merged into another: what arrives for it later lands in the other
                alias = session.reallocation.alias_of(study_uid)
                found = session.study(alias[1] if alias is not None and alias[0] == "STUDY" else study_uid)
            if found is not None:
                study = batch.studies.setdefault(study_uid, found)
                patient = self._patient(study.patient_pk)
            else:
                owner = self._owner(primary) if primary is not None else None
                if owner is None:
                    pk = session.create_patient(patient_attrs, now)
                    patient = batch.patients[pk] = PatientRow(pk, patient_attrs, [])
                    new_patient = True
                    if primary is not None:
                        self._add_identifier(patient, primary)
                else:
                    patient = owner
                study_attrs = level_attrs(header, Level.STUDY)
                study_pk = session.create_study(patient.pk, study_attrs, now)
                study = batch.studies[study_uid] = StudyRow(study_pk, study_uid, patient.pk, study_attrs, "", "")
                new_study = True

        # an object whose patient attributes the index already holds, all equal, can neither
        # conflict nor add anything: the common case, checked without a query
        settled = not new_patient and all(patient.attrs.get(k) == v for k, v in patient_attrs.items())
        if not settled and not new_study and primary is not None and not self._holds(patient, primary):
            if not self._identifiers(patient) and self._owner(primary) is None:
                self._add_identifier(patient, primary)
            else:
                conflicts.append(
                    Conflict(
                        kind="identifier",
                        patient_pk=patient.pk,
                        study_instance_uid=study_uid,
                        sop_instance_uid=sop_instance_uid,
                        details={
                            "reason": "the study is known under a patient with other identifiers",
                            "object_identifier": str(primary),
                            "patient_identifiers": [str(i) for i in self._identifiers(patient)],
                        },
                    )
                )
        if not new_patient and not settled:
            conflicts.extend(self._check_demographics(patient, patient_attrs, study_uid, sop_instance_uid))
        for other in [] if settled else others:
            if self._holds(patient, other):
                continue
            owner = self._owner(other)
            if owner is None:
                self._add_identifier(patient, other)
            elif owner.pk != patient.pk:
                conflicts.append(
                    Conflict(
                        kind="other-identifier",
                        patient_pk=patient.pk,
                        study_instance_uid=study_uid,
                        sop_instance_uid=sop_instance_uid,
                        details={
                            "reason": "an Other Patient ID of the object belongs to another patient",
                            "identifier": str(other),
                            "other_patient_pk": owner.pk,
                        },
                    )
                )
        if not new_study:
            added = supplement(study.attrs, level_attrs(header, Level.STUDY))
            if added is not None:
                study.attrs = added
                session.set_study_attrs(study.pk, added, now)

        series_attrs = level_attrs(header, Level.SERIES)
        if series is None:
            series_pk = session.create_series(study.pk, series_attrs, source_ae, now)
            series = batch.series[series_uid] = SeriesRow(series_pk, series_uid, study.pk, series_attrs)
            new_series = True
        else:
            added = supplement(series.attrs, series_attrs)
            if added is not None:
                series.attrs = added
                session.set_series_attrs(series.pk, added, now)
        return Attachment(
            patient_pk=patient.pk,
            study_pk=study.pk,
            series_pk=series.pk,
            new_patient=new_patient,
            new_study=new_study,
            new_series=new_series,
            conflicts=conflicts,
            study=study,
        )

    def _check_demographics(
        self, patient: PatientRow, incoming: dict[str, Any], study_uid: str, sop_instance_uid: str
    ) -> list[Conflict]:
        current = patient.attrs
        differences = {}
        if names_disagree(dj.text(current, PATIENT_NAME), dj.text(incoming, PATIENT_NAME)):
            differences["PatientName"] = [dj.text(current, PATIENT_NAME), dj.text(incoming, PATIENT_NAME)]
        if dates_disagree(dj.text(current, BIRTH_DATE), dj.text(incoming, BIRTH_DATE)):
            differences["PatientBirthDate"] = [dj.text(current, BIRTH_DATE), dj.text(incoming, BIRTH_DATE)]
        if differences:
            return [
                Conflict(
                    kind="demographics",
                    patient_pk=patient.pk,
                    study_instance_uid=study_uid,
                    sop_instance_uid=sop_instance_uid,
                    details={"reason": "demographics differ from the index", "index_vs_object": differences},
                )
            ]
        added = supplement(
            current, {k: v for k, v in incoming.items() if k not in (PATIENT_ID, ISSUER, ISSUER_QUALIFIERS)}
        )
        if added is not None:
            patient.attrs = added
            self.session.set_patient_attrs(patient.pk, added, self.batch.now)
        return []
