"""HL7 patient data in DICOM terms: names, sexes, birth dates, and which PID-3 is the Patient ID."""

from __future__ import annotations

import pytest

from openpacs.domain.hl7_adt import Hl7Identifier, birth, demographics, patient_identifier, person_name, sex
from openpacs.domain.hl7_fields import segments


@pytest.mark.parametrize(
    ("xpn", "pn"),
    [
        ("Smith^John^Q^Jr^Dr", "Smith^John^Q^Dr^Jr"),  # suffix and prefix swap places
        ("Smith^John", "Smith^John"),
        ("Smith^John^^^Dr^MD", "Smith^John^^Dr"),  # degree has no place in PN
        ("Smith", "Smith"),
    ],
)
def test_names(xpn: str, pn: str) -> None:
    assert person_name(xpn) == pn


@pytest.mark.parametrize(("hl7_sex", "dicom"), [("F", "F"), ("M", "M"), ("O", "O"), ("U", ""), ("A", ""), ("N", "")])
def test_sexes(hl7_sex: str, dicom: str) -> None:
    assert sex(hl7_sex) == dicom


@pytest.mark.parametrize(
    ("dtm", "date", "time"),
    [
        ("19700101", "19700101", ""),
        ("197001011230", "19700101", "1230"),
        ("19700101123045.5+0100", "19700101", "123045.5"),
        ("19700101-0500", "19700101", ""),
        ("1970", "", ""),
        ("garbage!", "", ""),
    ],
)
def test_birth_dates_may_carry_a_time_and_a_zone(dtm: str, date: str, time: str) -> None:
    assert birth(dtm) == (date, time)


def test_the_mrn_repetition_is_the_patient_id_and_unlisted_authorities_are_the_sites_own() -> None:
    reps = ["999-99^^^SSA^SS", "MRN1^^^HOSP^MR"]
    assert patient_identifier(reps, default_issuer="", authorities={}) == Hl7Identifier("MRN1", "", "HOSP")
    assert patient_identifier(reps, default_issuer="SITE", authorities={"HOSP": "HOSP_NS"}) == Hl7Identifier(
        "MRN1", "HOSP_NS", "HOSP"
    )
    # no MR repetition: the first; an authority with universal ID parts keeps its namespace part
    assert patient_identifier(["A1^^^OTHER&1.2.3&ISO"], default_issuer="SITE", authorities={}) == Hl7Identifier(
        "A1", "SITE", "OTHER"
    )
    assert patient_identifier(["", "^^^X"], default_issuer="", authorities={}) is None


def test_demographics_of_a_pid_segment() -> None:
    message = segments("MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5\rPID|||X||Doe^Jane^^^Mrs~Alias^J||19800202|F")
    assert demographics(message[1]) == {
        "PatientName": "Doe^Jane^^Mrs",
        "PatientBirthDate": "19800202",
        "PatientSex": "F",
    }
    bare = segments("MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5\rPID|||X")
    assert demographics(bare[1]) == {}
