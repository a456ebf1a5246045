"""Tag tables per level of the DICOM information model (PS3.4 C.6.1.1, C.6.2.1).

The attributes of each level form that level's attribute set: the index keeps one set
per patient, study and series, and the coercion step applies them to every outbound
object (ARCHITECTURE.md section 3). Everything not listed here belongs to the instance.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword


class Level(StrEnum):
    """Query/Retrieve levels (PS3.4 C.6)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


def tag_of(keyword: str) -> int:
    """The tag of a DICOM keyword, as an int."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return int(tag)


def json_key(tag: int) -> str:
    """The DICOM JSON key of a tag (PS3.18 F.2.1: eight uppercase hex digits)."""
    return f"{tag:08X}"


def key(keyword: str) -> str:
    """The DICOM JSON key of a keyword ('PatientID' -> '00100020')."""
    return json_key(tag_of(keyword))


def keyword_of(tag: int) -> str:
    """The keyword of a tag, or its hex form for private and unknown tags."""
    return keyword_for_tag(tag) or json_key(tag)


def vr_of(tag: int) -> str:
    """The dictionary VR of a tag ('UN' when unknown)."""
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


PATIENT_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "TypeOfPatientID",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "PatientMotherBirthName",
    "EthnicGroup",
    "PatientComments",
    "PatientSpeciesDescription",
    "PatientBreedDescription",
    "ResponsiblePerson",
    "ResponsiblePersonRole",
    "ResponsibleOrganization",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
)

STUDY_KEYWORDS: tuple[str, ...] = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "StudyID",
    "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence",
    "StudyDescription",
    "ProcedureCodeSequence",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "AdmittingDiagnosesDescription",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "Occupation",
    "AdditionalPatientHistory",
    "OtherStudyNumbers",
    "AdmissionID",
    "IssuerOfAdmissionIDSequence",
    "ReasonForPerformedProcedureCodeSequence",
)

SERIES_KEYWORDS: tuple[str, ...] = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "Laterality",
    "PerformingPhysicianName",
    "OperatorsName",
    "ProtocolName",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepID",
    "PerformedProcedureStepDescription",
    "RequestAttributesSequence",
    "InstitutionName",
    "InstitutionalDepartmentName",
    "StationName",
)

#: Keys computed by the archive, never stored in an object (PS3.4 C.6.1.1, C.6.2.1).
COMPUTED_KEYWORDS: dict[str, Level] = {
    "NumberOfPatientRelatedStudies": Level.PATIENT,
    "NumberOfPatientRelatedSeries": Level.PATIENT,
    "NumberOfPatientRelatedInstances": Level.PATIENT,
    "NumberOfStudyRelatedSeries": Level.STUDY,
    "NumberOfStudyRelatedInstances": Level.STUDY,
    "ModalitiesInStudy": Level.STUDY,
    "SOPClassesInStudy": Level.STUDY,
    "NumberOfSeriesRelatedInstances": Level.SERIES,
}

#: The unique key of each level (PS3.4 C.6.1.1.1).
UNIQUE_KEYWORD: dict[Level, str] = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}

PATIENT_TAGS: frozenset[int] = frozenset(tag_of(k) for k in PATIENT_KEYWORDS)
STUDY_TAGS: frozenset[int] = frozenset(tag_of(k) for k in STUDY_KEYWORDS)
SERIES_TAGS: frozenset[int] = frozenset(tag_of(k) for k in SERIES_KEYWORDS)
COMPUTED_TAGS: dict[int, Level] = {tag_of(k): level for k, level in COMPUTED_KEYWORDS.items()}

LEVEL_TAGS: dict[Level, frozenset[int]] = {
    Level.PATIENT: PATIENT_TAGS,
    Level.STUDY: STUDY_TAGS,
    Level.SERIES: SERIES_TAGS,
}

PATIENT_KEYS: frozenset[str] = frozenset(json_key(t) for t in PATIENT_TAGS)
STUDY_KEYS: frozenset[str] = frozenset(json_key(t) for t in STUDY_TAGS)
SERIES_KEYS: frozenset[str] = frozenset(json_key(t) for t in SERIES_TAGS)

LEVEL_KEYS: dict[Level, frozenset[str]] = {
    Level.PATIENT: PATIENT_KEYS,
    Level.STUDY: STUDY_KEYS,
    Level.SERIES: SERIES_KEYS,
}
ALL_LEVEL_KEYS: frozenset[str] = PATIENT_KEYS | STUDY_KEYS | SERIES_KEYS


def level_elements(header: dict[str, Any]) -> dict[str, Any]:
    """The patient, study and series level elements of an instance header (DICOM JSON)."""
    return {k: v for k, v in header.items() if k in ALL_LEVEL_KEYS}


def level_of_tag(tag: int) -> Level:
    """The level an attribute belongs to (instance level for anything not listed)."""
    for level in (Level.PATIENT, Level.STUDY, Level.SERIES):
        if tag in LEVEL_TAGS[level]:
            return level
    computed = COMPUTED_TAGS.get(tag)
    return computed if computed is not None else Level.IMAGE


LEVEL_ORDER: tuple[Level, ...] = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)


def levels_down_to(level: Level) -> tuple[Level, ...]:
    """The levels from PATIENT down to *level*, inclusive."""
    return LEVEL_ORDER[: LEVEL_ORDER.index(level) + 1]
