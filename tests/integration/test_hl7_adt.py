"""ADT messages applied by a running server, seen through QIDO-RS: demographics updated (names,
sexes and dates turned into DICOM's forms), a patient registered before its images, a
merge (dcm4che's real A40 among them) and a change of identifier; a message that fails
holds back the same patient's later messages while others go on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import SHARED, ServerProcess, findscu_studies, require, start_server, store_ct
from hl7_client import send, stored
from web import accounts_of

pytestmark = pytest.mark.usefixtures("dcmtk")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    running = start_server(tmp_path / "data", f"sqlite:///{tmp_path / 'index.sqlite3'}")
    try:
        yield running
    finally:
        running.stop()


def _adt(trigger: str, control: str, pid: str, extra: str = "") -> bytes:
    text = (
        f"MSH|^~\\&|HIS|HOSP|OPENPACS|HOSP|20261128120000||ADT^{trigger}|{control}|P|2.5.1\r"
        f"EVN|{trigger}|20261128120000\r{pid}\r{extra}"
    )
    return text.encode()


def _studies(server: ServerProcess, patient_id: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=server.base_url, timeout=30, headers=accounts_of(server)["admin"].bearer) as http:
        response = http.get("/dicom-web/studies", params={"PatientID": patient_id, "includefield": "all"})
        return [] if response.status_code == 204 else list(response.json())


def _name(answer: dict[str, Any]) -> str:
    return str(answer["00100010"]["Value"][0]["Alphabetic"])


def test_update_register_merge_and_change_of_identifier(server: ServerProcess, tmp_path: Path) -> None:
    study = store_ct(server, tmp_path, "ADT1", "WRONG^NAME")
    pid = "PID|||ADT1^^^HOSP^MR~999-99^^^SSA^SS||Smith^John^Q^Jr^Dr||197001011230+0100|U"
    assert b"MSA|AA|U1" in send(server, _adt("A08", "U1", pid))
    applied = stored(server, "U1")
    assert applied["status"] == "processed", applied
    (answer,) = _studies(server, "ADT1")
    assert _name(answer) == "Smith^John^Q^Dr^Jr"  # XPN suffix^prefix -> PN prefix^suffix
    assert answer["00100030"]["Value"] == ["19700101"]
    assert "Value" not in answer.get("00100040", {})  # U has no DICOM sex: empty

    # a patient announced by the HIS before any image: registered, and its images find it
    send(server, _adt("A04", "R1", "PID|||ADT2^^^HOSP^MR||Doe^Jane||19800202|F"))
    assert stored(server, "R1")["error"] == "patient ADT2 registered"
    second = store_ct(server, tmp_path, "ADT2", "DOE^JANE")
    assert {s["0020000D"]["Value"][0] for s in _studies(server, "ADT2")} == {second}

    # A40: ADT1 merged into ADT2 (MRG-1 into PID-3); visible at once
    send(server, _adt("A40", "M1", "PID|||ADT2^^^HOSP^MR||Doe^Jane", "MRG|ADT1^^^HOSP^MR\r"))
    assert stored(server, "M1")["status"] == "processed"
    assert {s["0020000D"]["Value"][0] for s in _studies(server, "ADT2")} == {study, second}
    assert _studies(server, "ADT1") == []
    found = findscu_studies(server, "ADT2")  # and in C-FIND (DCMTK findscu), with the target's name
    assert study in found and second in found and "Doe^Jane" in found
    assert study not in findscu_studies(server, "ADT1")

    # A47: the identifier changes (MRG-1 -> PID-3)
    send(server, _adt("A47", "C1", "PID|||ADT3^^^HOSP^MR||Doe^Jane", "MRG|ADT2^^^HOSP^MR\r"))
    assert stored(server, "C1")["status"] == "processed"
    assert {s["0020000D"]["Value"][0] for s in _studies(server, "ADT3")} == {study, second}

    # what this version does not apply is kept and marked skipped with the reason
    send(server, b"MSH|^~\\&|RIS|HOSP|PACS|HOSP|2026||SIU^S12|S1|P|2.5.1\rPID|||ADT3\r")
    skipped = stored(server, "S1")
    assert skipped["status"] == "skipped" and "SIU^S12" in skipped["error"]


def test_a_failed_message_holds_back_its_patient_only(server: ServerProcess, tmp_path: Path) -> None:
    store_ct(server, tmp_path, "HOLD1", "FIRST^NAME")
    store_ct(server, tmp_path, "FREE1", "OTHER^NAME")
    # a merge from a patient the archive does not know: it fails, and an alert is raised
    send(server, _adt("A40", "F1", "PID|||HOLD1^^^HOSP^MR", "MRG|NOBODY^^^HOSP^MR\r"))
    failed = stored(server, "F1")
    assert failed["status"] == "failed" and "NOBODY" in failed["error"]
    send(server, _adt("A08", "F2", "PID|||HOLD1^^^HOSP^MR||Held^Back"))
    send(server, _adt("A08", "F3", "PID|||FREE1^^^HOSP^MR||Goes^On"))
    assert stored(server, "F3")["status"] == "processed"
    assert stored(server, "F2", timeout=2)["status"] == "received"  # waits behind F1
    assert _name(_studies(server, "FREE1")[0]) == "Goes^On"
    assert _name(_studies(server, "HOLD1")[0]) == "FIRST^NAME"
    alerts = server.cli("jobs", "alerts").stdout
    assert "hl7-failed" in alerts


def test_dcm4ches_real_mergestored(server: ServerProcess, tmp_path: Path) -> None:
    message = SHARED / "testdata" / "hl7" / "dcm4che" / "ADT^A40-PatientMerge.hl7"
    require(message.is_file(), str(message))
    old = store_ct(server, tmp_path, "OLD_PID_1", "Old_Smith^Lucy^Mark")
    new = store_ct(server, tmp_path, "NEW_PID_1", "New_Smith^Lucy^Mark")
    reply = send(server, message.read_bytes())
    assert b"MSA|AA|1002122" in reply
    assert stored(server, "1002122")["status"] == "processed"
    assert {s["0020000D"]["Value"][0] for s in _studies(server, "NEW_PID_1")} == {old, new}
    assert _studies(server, "OLD_PID_1") == []
