"""Query identifiers built from attribute names and values (QIDO-RS parameters, the admin API).

PS3.18 8.3.4: a key is a keyword (``PatientName``), a tag (``00100010``), or a path of
either into a sequence (``RequestAttributesSequence.AccessionNumber``). Values use the
matching syntax of C-FIND (PS3.4 C.2.2.2).
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from openpacs.domain.errors import InvalidQuery
from openpacs.domain.tags import Level, json_key

#: Attributes returned by default at each level (PS3.18 Table 6.7.1-2).
DEFAULT_RETURN: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ),
    Level.STUDY: (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "InstanceAvailability",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "RetrieveAETitle",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    Level.SERIES: (
        "Modality",
        "SeriesDescription",
        "SeriesInstanceUID",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "BodyPartExamined",
        "StudyInstanceUID",
    ),
    Level.IMAGE: (
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceAvailability",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
        "StudyInstanceUID",
        "SeriesInstanceUID",
    ),
}


def tag_from_name(name: str) -> int:
    """The tag of a keyword or of an 8-digit hex tag (raises InvalidQuery)."""
    name = name.strip()
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        return int(name, 16)
    tag = tag_for_keyword(name)
    if tag is None:
        raise InvalidQuery(f"unknown attribute {name!r}")
    return int(tag)


def vr_of(tag: int) -> str:
    """The dictionary VR of a tag ('UN' for unknown, 'LO' for private creators)."""
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return "UN"
    return vr.split(" or ", maxsplit=1)[0]


def _element(tag: int, value: str | None) -> dict[str, Any]:
    vr = vr_of(tag)
    element: dict[str, Any] = {"vr": vr}
    if value:
        if vr == "UI":
            value = value.replace(",", "\\")  # PS3.18 8.3.4.1: UID lists may be comma-separated
        if vr == "PN":
            element["Value"] = [{"Alphabetic": v} for v in value.split("\\")]
        elif vr == "SQ":
            raise InvalidQuery(f"{keyword_for_tag(tag) or json_key(tag)} is a sequence: name a key inside it")
        else:
            element["Value"] = value.split("\\")
    return element


def build_identifier(
    level: Level,
    keys: dict[str, str],
    includes: list[str] | None = None,
    *,
    fuzzy: bool = False,
) -> dict[str, Any]:
    """A C-FIND identifier (DICOM JSON) from names and values, with the attributes to return."""
    identifier: dict[str, Any] = {"00080052": {"vr": "CS", "Value": [str(level)]}}
    for name in (*DEFAULT_RETURN[level], *(includes or ())):
        tag = tag_from_name(name)
        identifier.setdefault(json_key(tag), {"vr": vr_of(tag)})
    for name, given in keys.items():
        tags = [tag_from_name(p) for p in name.split(".")]
        value = given
        if fuzzy and vr_of(tags[-1]) == "PN" and value and "*" not in value and "?" not in value:
            # fuzzy person name matching: each component matches as a prefix
            value = "^".join(part + "*" if part else part for part in value.split("^"))
        target = identifier
        for outer in tags[:-1]:
            element = target.setdefault(json_key(outer), {"vr": "SQ", "Value": [{}]})
            if element.get("vr") != "SQ":
                raise InvalidQuery(f"{name}: {keyword_for_tag(outer) or json_key(outer)} is not a sequence")
            if not element.get("Value"):
                element["Value"] = [{}]
            target = element["Value"][0]
        target[json_key(tags[-1])] = _element(tags[-1], value)
    return identifier
