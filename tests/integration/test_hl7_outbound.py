"""Notifications to a RIS: a second OpenPACS plays the RIS (a real MLLP receiver that stores
what it gets and answers AA, or AR to a sender it does not allow). A study received and
completed for an order gives OMI^O23 status updates (IP, then CM); an administrator's
patient update gives ADT^A08; an HL7 update is not echoed back; an AR marks the message
failed with an alert; an unreachable RIS holds its queue until it is back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ServerProcess, free_port, start_server, store_ct
from hl7_client import send, stored
from web import accounts_of, http

pytestmark = pytest.mark.usefixtures("dcmtk")


@pytest.fixture(scope="module")
def ris(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("ris")
    running = start_server(
        root / "data", f"sqlite:///{root / 'index.sqlite3'}",
        extra_env={"OPENPACS_HL7__SENDERS": json.dumps([{"application": "OPENPACS"}]),
                   "OPENPACS_HL7__ACCEPT_UNKNOWN_SENDERS": "false"},
    )  # fmt: skip
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def pacs(ris: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("pacs")
    destinations = [
        {"name": "ris", "host": "127.0.0.1", "port": ris.hl7_port, "structure": "OMI",
         "events": ["study-received", "study-complete", "patient-changes"], "receiving_application": "RIS"},
        {"name": "rogue", "host": "127.0.0.1", "port": ris.hl7_port, "events": ["study-complete"],
         "sending_application": "ROGUE"},
    ]  # fmt: skip
    running = start_server(
        root / "data", f"sqlite:///{root / 'index.sqlite3'}",
        extra_env={"OPENPACS_HL7__DESTINATIONS": json.dumps(destinations),
                   "OPENPACS_ROUTING__STABLE_AFTER_SECONDS": "1", "OPENPACS_ROUTING__RETRY_BASE_SECONDS": "0.2"},
    )  # fmt: skip
    try:
        yield running
    finally:
        running.stop()


def _received(ris: ServerProcess, predicate: Any, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
    """Messages the RIS stored that satisfy *predicate* (waits for *count* of them)."""
    deadline = time.monotonic() + timeout
    with http(ris, accounts_of(ris)["admin"]) as client:
        while True:
            found = [
                client.get(f"/api/hl7/messages/{m['id']}").json()
                for m in client.get("/api/hl7/messages", params={"limit": 200}).json()["messages"]
            ]
            wanted = [m for m in found if predicate(m)]
            if len(wanted) >= count or time.monotonic() > deadline:
                return wanted
            time.sleep(0.3)


def test_study_events_and_patient_changes_reach_the_ris(
    pacs: ServerProcess, ris: ServerProcess, tmp_path: Path
) -> None:
    order = (
        "MSH|^~\\&|RIS|HOSP|PACS|HOSP|2026||ORM^O01|N1|P|2.3.1\rPID|||OUT1^^^HOSP^MR||Out^Bound\r"
        "ORC|NW|PL-OUT|FI-OUT||SC\rOBR|1|PL-OUT|FI-OUT|CT^CT chest^L||||||||||||||ACC-OUT|RP-OUT|SPS-OUT||||CT\r"
    )
    send(pacs, order.encode())
    assert stored(pacs, "N1")["status"] == "processed"
    study = store_ct(pacs, tmp_path, "OUT1", "OUT^BOUND", "ACC-OUT")

    def status_update(code: str) -> Any:
        return lambda m: (
            m["message_type"] == "OMI"
            and any(s["name"] == "ORC" and s["fields"].get("ORC-5") == code for s in m["segments"])
        )

    (received,) = _received(ris, status_update("IP"))
    fields = {k: v for s in received["segments"] for k, v in s["fields"].items()}
    assert fields["IPC-1"] == "ACC-OUT" and fields["IPC-2"] == "RP-OUT" and fields["IPC-3"] == study
    assert fields["ORC-2"] == "PL-OUT" and fields["ORC-3"] == "FI-OUT" and fields["PID-3"].startswith("OUT1^")
    assert fields["MSH-3"] == "OPENPACS" and fields["MSH-5"] == "RIS"
    assert len(_received(ris, status_update("CM"))) == 1  # the study became stable
    with http(pacs, accounts_of(pacs)["admin"]) as client:
        out = client.get("/api/hl7/messages", params={"status": "sent"}).json()["messages"]
        assert {m["ack_code"] for m in out} == {"AA"} and len(out) >= 2

    # an administrator's correction goes out as ADT^A08; one that came by HL7 does not go back
    fix = pacs.cli("qa", "update-patient", "OUT1", "--set", "PatientName=FIXED^NAME", "--reason", "typo")
    assert fix.returncode == 0, fix.stderr
    (adt,) = _received(ris, lambda m: m["trigger"] == "A08")
    assert any(s["fields"].get("PID-5") == "FIXED^NAME" for s in adt["segments"])
    send(pacs, b"MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A08|H1|P|2.5.1\rPID|||OUT1^^^HOSP^MR||From^His\r")
    assert stored(pacs, "H1")["status"] == "processed"
    time.sleep(2)
    assert len(_received(ris, lambda m: m["trigger"] == "A08", timeout=0)) == 1

    # the RIS refuses the sender ROGUE: AR, the message failed, an alert raised
    with http(pacs, accounts_of(pacs)["admin"]) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            failed = [m for m in client.get("/api/hl7/messages", params={"status": "failed"}).json()["messages"]
                      if m["direction"] == "out"]  # fmt: skip
            if failed:
                break
            time.sleep(0.3)
        assert failed and failed[0]["ack_code"] == "AR" and "not allowed" in failed[0]["error"]
    assert "hl7-send-failed" in pacs.cli("jobs", "alerts").stdout


def test_an_unreachable_ris_holds_its_queue(tmp_path: Path) -> None:
    port = free_port()
    destinations = [{"name": "late", "host": "127.0.0.1", "port": port, "events": ["study-received"]}]
    pacs = start_server(
        tmp_path / "pacs", f"sqlite:///{tmp_path / 'pacs.sqlite3'}",
        extra_env={"OPENPACS_HL7__DESTINATIONS": json.dumps(destinations),
                   "OPENPACS_ROUTING__RETRY_BASE_SECONDS": "0.2", "OPENPACS_ROUTING__RETRY_MAX_SECONDS": "1"},
    )  # fmt: skip
    try:
        first, second = (
            store_ct(pacs, tmp_path, "LATE1", "OUT^BOUND", "ACC-L1"),
            store_ct(pacs, tmp_path, "LATE2", "OUT^BOUND", "ACC-L2"),
        )
        time.sleep(2)
        with http(pacs, accounts_of(pacs)["admin"]) as client:
            queued = client.get("/api/hl7/messages", params={"status": "queued"}).json()["messages"]
            assert len(queued) == 2  # kept while the RIS is down
        ris = start_server(tmp_path / "ris", f"sqlite:///{tmp_path / 'ris.sqlite3'}", hl7_port=port)
        try:
            received = _received(ris, lambda m: m["message_type"] == "ORM", count=2)
            studies = [
                f["fields"]["ZDS-1"].split("^")[0] for m in received for f in m["segments"] if f["name"] == "ZDS"
            ]
            assert sorted(studies) == sorted([first, second])
            in_order = [next(f["fields"]["ZDS-1"] for f in m["segments"] if f["name"] == "ZDS") for m in
                        sorted(received, key=lambda m: m["id"])]  # fmt: skip
            assert in_order[0].startswith(first) and in_order[1].startswith(second)  # sent in order
        finally:
            ris.stop()
    finally:
        pacs.stop()
