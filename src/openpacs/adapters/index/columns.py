"""The index columns derived from each level's attribute set (DICOM JSON).

Columns are copies kept for matching and sorting; ``attrs`` stays the reference. Times
are kept in a comparable form ('HHMMSS.ffffff') so that range matching works in SQL.
"""

from __future__ import annotations

from typing import Any

from openpacs.domain import dicom_json as dj
from openpacs.domain.matching import tm_key
from openpacs.domain.names import matching_name
from openpacs.domain.tags import key

PATIENT_ID = key("PatientID")
ISSUER = key("IssuerOfPatientID")
PATIENT_NAME = key("PatientName")
BIRTH_DATE = key("PatientBirthDate")
SEX = key("PatientSex")
STUDY_UID = key("StudyInstanceUID")
STUDY_DATE = key("StudyDate")
STUDY_TIME = key("StudyTime")
ACCESSION = key("AccessionNumber")
ACCESSION_ISSUER_SEQ = key("IssuerOfAccessionNumberSequence")
LOCAL_NAMESPACE = key("LocalNamespaceEntityID")
UNIVERSAL_ID = key("UniversalEntityID")
STUDY_ID = key("StudyID")
STUDY_DESCRIPTION = key("StudyDescription")
REFERRING = key("ReferringPhysicianName")
SERIES_UID = key("SeriesInstanceUID")
MODALITY = key("Modality")
SERIES_NUMBER = key("SeriesNumber")
SERIES_DESCRIPTION = key("SeriesDescription")
BODY_PART = key("BodyPartExamined")
SERIES_DATE = key("SeriesDate")
SERIES_TIME = key("SeriesTime")
REQUEST_ATTRIBUTES = key("RequestAttributesSequence")
REQUESTED_PROCEDURE_ID = key("RequestedProcedureID")
SPS_ID = key("ScheduledProcedureStepID")


def _time(value: str) -> str:
    return tm_key(value) if value.strip() else ""


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _date(value: str) -> str:
    return value.replace(".", "").strip()[:8]


def patient_columns(attrs: dict[str, Any]) -> dict[str, Any]:
    """Columns of the patient table."""
    name = dj.text(attrs, PATIENT_NAME)
    return {
        "patient_id": dj.text(attrs, PATIENT_ID)[:64],
        "issuer": dj.text(attrs, ISSUER)[:200],
        "patient_name": name[:400],
        "patient_name_match": matching_name(name)[:400],
        "patient_birth_date": _date(dj.text(attrs, BIRTH_DATE)),
        "patient_sex": dj.text(attrs, SEX)[:16],
    }


def accession_issuer(attrs: dict[str, Any], sequence_key: str = ACCESSION_ISSUER_SEQ) -> str:
    """The issuer of an accession number as 'namespace' or 'namespace&universal id'."""
    items = dj.items(attrs, sequence_key)
    if not items:
        return ""
    namespace = dj.text(items[0], LOCAL_NAMESPACE)
    universal = dj.text(items[0], UNIVERSAL_ID)
    return f"{namespace}&{universal}" if universal else namespace


def study_columns(attrs: dict[str, Any]) -> dict[str, Any]:
    """Columns of the study table."""
    referring = dj.text(attrs, REFERRING)
    return {
        "study_date": _date(dj.text(attrs, STUDY_DATE)),
        "study_time": _time(dj.text(attrs, STUDY_TIME)),
        "accession_number": dj.text(attrs, ACCESSION)[:64],
        "accession_issuer": accession_issuer(attrs)[:200],
        "study_id": dj.text(attrs, STUDY_ID)[:16],
        "study_description": dj.text(attrs, STUDY_DESCRIPTION)[:400],
        "referring_physician_name": referring[:400],
        "referring_physician_name_match": matching_name(referring)[:400],
    }


def series_columns(attrs: dict[str, Any]) -> dict[str, Any]:
    """Columns of the series table."""
    return {
        "modality": dj.text(attrs, MODALITY)[:16],
        "series_number": _int(dj.first(attrs, SERIES_NUMBER)),
        "series_description": dj.text(attrs, SERIES_DESCRIPTION)[:400],
        "body_part_examined": dj.text(attrs, BODY_PART)[:16],
        "series_date": _date(dj.text(attrs, SERIES_DATE)),
        "series_time": _time(dj.text(attrs, SERIES_TIME)),
    }


def series_requests(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of series_request: one per item of the Request Attributes Sequence."""
    rows = []
    for item in dj.items(attrs, REQUEST_ATTRIBUTES):
        rows.append(
            {
                "accession_number": dj.text(item, ACCESSION)[:64],
                "accession_issuer": accession_issuer(item)[:200],
                "requested_procedure_id": dj.text(item, REQUESTED_PROCEDURE_ID)[:16],
                "scheduled_procedure_step_id": dj.text(item, SPS_ID)[:16],
                "study_instance_uid": dj.text(item, STUDY_UID)[:64],
            }
        )
    return rows
