"""Answers encoded by the DIMSE door read back the same as pydicom's encoding of them."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset

from openpacs.dimse.identifiers import _encode_with_pydicom, decode_identifier, encode_identifier

ANSWER: dict[str, Any] = {
    "00080052": {"vr": "CS", "Value": ["STUDY"]},
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen", "Ideographic": "", "Phonetic": "M"}]},
    "00100020": {"vr": "LO", "Value": ["PID1"]},
    "00100030": {"vr": "DA"},
    "0020000D": {"vr": "UI", "Value": ["1.2.3.4.5"]},
    "00080061": {"vr": "CS", "Value": ["CT", "MR"]},
    "00201208": {"vr": "IS", "Value": [12]},
    "00101030": {"vr": "DS", "Value": [72.5]},
    "00280010": {"vr": "US", "Value": [512]},
    "00081032": {
        "vr": "SQ",
        "Value": [{"00080100": {"vr": "SH", "Value": ["X1"]}, "00080104": {"vr": "LO", "Value": ["Knie"]}}],
    },
    "00081030": {"vr": "LO", "Value": ["Hüfte links"]},
}


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"])
@pytest.mark.parametrize("charset", [["ISO_IR 100"], ["ISO_IR 192"]])
def test_answers_read_back_like_pydicom_encodes_them(syntax: str, charset: list[str]) -> None:
    ours = decode_identifier(encode_identifier(ANSWER, syntax, charset), syntax)
    theirs = decode_identifier(_encode_with_pydicom(ANSWER, syntax, charset), syntax)
    assert ours == theirs
    assert ours["00100010"]["Value"][0]["Alphabetic"] == "Müller^Jürgen"


def test_pydicom_reads_our_encoding() -> None:
    data = encode_identifier(ANSWER, "1.2.840.10008.1.2.1", ["ISO_IR 100"])
    fp = DicomBytesIO(data)
    ds = read_dataset(fp, is_implicit_VR=False, is_little_endian=True)
    assert ds.PatientName == "Müller^Jürgen==M"
    assert ds.ModalitiesInStudy == ["CT", "MR"]
    assert ds.PatientWeight == 72.5
    assert ds.ProcedureCodeSequence[0].CodeMeaning == "Knie"


def test_iso_2022_character_sets_go_through_pydicom() -> None:
    answer = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]}}
    data = encode_identifier(answer, "1.2.840.10008.1.2.1", ["ISO 2022 IR 6", "ISO 2022 IR 87"])
    decoded = decode_identifier(data, "1.2.840.10008.1.2.1")
    assert decoded["00100010"]["Value"][0]["Ideographic"] == "山田^太郎"
