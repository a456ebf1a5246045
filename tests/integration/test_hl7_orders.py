"""Orders and results over MLLP, applied by a running server and read back through the REST
API: ORM^O01 and OMI^O23 become worklist items (an OMI with two IPC segments gives two),
changes and cancels, ADT^A10 marks the day's steps arrived, ORU^R01 reports (text, PDF,
CDA) are linked to their procedure and move its status; the error queue (reprocess, skip);
per-sender ACK modes, the allow-list, batch files, enhanced mode and `openpacs hl7 send`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED, ServerProcess, free_port, require, start_server
from hl7_client import send, stored
from web import accounts_of, http

DCM4CHE = SHARED / "testdata" / "hl7" / "dcm4che"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("orders")
    senders = [
        {"application": "STRICT", "ack_mode": "after-process"},
        {"application": "RIS", "facility": "EAST", "mapping": {"station_ae_title": "OBR-21"}},
    ]
    running = start_server(
        root / "data", f"sqlite:///{root / 'index.sqlite3'}",
        extra_env={"OPENPACS_HL7__SENDERS": json.dumps(senders)},
    )  # fmt: skip
    try:
        yield running
    finally:
        running.stop()


def _get(server: ServerProcess, path: str, **params: Any) -> Any:
    with http(server, accounts_of(server)["admin"]) as client:
        response = client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


def _orm(control: str, order: str, accession: str, obrs: list[str], *, orc1: str = "NW", orc5: str = "SC",
         app: str = "RIS", patient: str = "ORD1^^^HOSP^MR", start: str = "202611281000") -> bytes:  # fmt: skip
    segments = [
        f"MSH|^~\\&|{app}|HOSP|PACS|HOSP|20261128090000||ORM^O01|{control}|P|2.3.1",
        f"PID|||{patient}||Doe^Jane^^Jr^Mrs||19800202|F",
        "PV1||O|RAD|||||1234^Welby^Marcus^^^Dr",
    ]
    for obr in obrs:
        segments.append(f"ORC|{orc1}|{order}|F{order}||{orc5}||^^^{start}^^S||||||||||RAD^Radiology")
        segments.append(obr.replace("{acc}", accession))
    return "\r".join(segments).encode()


def test_orm_gives_worklist_items_changed_cancelled_and_arrived(server: ServerProcess) -> None:
    today = datetime.now().astimezone().strftime("%Y%m%d")
    obr = "OBR|1|P100|F100|71020^CHEST 2 VIEWS^C4||||||||||||||{acc}|RP100|SPS{n}||||CR"
    message = _orm("O1", "P100", "ACC100", [obr.format(n=1, acc="{acc}"), obr.format(n=2, acc="{acc}")],
                   start=f"{today}0930")  # fmt: skip
    assert b"MSA|AA|O1" in send(server, message)
    assert stored(server, "O1")["status"] == "processed"
    (order,) = _get(server, "/api/orders", accession="ACC100")["orders"]
    (procedure,) = order["procedures"]
    assert procedure["requested_procedure_id"] == "RP100" and procedure["status"] == "scheduled"
    assert len(procedure["steps"]) == 2  # one requested procedure, two scheduled steps
    uid = procedure["study_instance_uid"]
    assert uid.startswith("1.2.826.0.1.3680043")  # none given: one was generated
    items = _get(server, "/api/worklist", date=today, modality="CR")["items"]
    mine = [i for i in items if i["order"] == order["id"]]
    assert [i["scheduled_procedure_step_id"] for i in mine] == ["SPS1", "SPS2"]
    item = mine[0]["item"]
    assert item["00100010"]["Value"][0]["Alphabetic"] == "Doe^Jane^^Mrs^Jr"  # XPN suffix/prefix swapped
    assert item["00401001"]["Value"] == ["RP100"] and item["00080050"]["Value"] == ["ACC100"]
    assert item["0020000D"]["Value"] == [uid]
    assert item["00401003"]["Value"] == ["STAT"]  # ORC-7.6 S
    assert item["00080090"]["Value"][0]["Alphabetic"] == "Welby^Marcus^^Dr"
    sps = item["00400100"]["Value"][0]
    assert sps["00400002"]["Value"] == [today] and sps["00400003"]["Value"] == ["093000"]
    assert sps["00400020"]["Value"] == ["SCHEDULED"]

    # XO: the modality changes, the Study Instance UID and status stay
    changed = _orm("O2", "P100", "ACC100", [obr.format(n=1, acc="{acc}").replace("||CR", "||DX")], orc1="XO",
                   start=f"{today}0930")  # fmt: skip
    send(server, changed)
    assert stored(server, "O2")["status"] == "processed"
    detail = _get(server, f"/api/orders/{order['id']}")
    steps = {s["scheduled_procedure_step_id"]: s for s in detail["procedures"][0]["steps"]}
    assert steps["SPS1"]["modality"] == "DX" and detail["procedures"][0]["study_instance_uid"] == uid

    # A10: the patient arrived; today's steps are ARRIVED
    send(server, b"MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A10|A10a|P|2.5.1\rEVN|A10\rPID|||ORD1^^^HOSP^MR\r")
    assert "2 scheduled steps" in stored(server, "A10a")["error"]
    detail = _get(server, f"/api/orders/{order['id']}")
    assert {s["status"] for s in detail["procedures"][0]["steps"]} == {"ARRIVED"}
    assert [h["status"] for h in detail["procedures"][0]["history"]] == ["scheduled", "arrived"]

    # CA: cancelled, its steps discontinued
    send(server, _orm("O3", "P100", "ACC100", [obr.format(n=1, acc="{acc}")], orc1="CA", orc5="CA"))
    assert stored(server, "O3")["status"] == "processed"
    detail = _get(server, f"/api/orders/{order['id']}")
    assert detail["procedures"][0]["status"] == "cancelled"
    assert {s["status"] for s in detail["procedures"][0]["steps"]} == {"DISCONTINUED"}
    assert _get(server, "/api/worklist", status="SCHEDULED", patient_id="ORD1")["items"] == []


def test_omi_with_two_ipc_segments_gives_two_items(server: ServerProcess) -> None:
    text = "\r".join(
        [
            "MSH|^~\\&|RIS|HOSP|PACS|HOSP|20261128090000||OMI^O23^OMI_O23|OMI1|P|2.5.1||||||UNICODE UTF-8",
            "PID|||OMI1^^^HOSP^MR||Müller^Jürgen^^III^Prof.||19600101|M",
            "ORC|NW|P200|F200||SC",
            "TQ1|||||||202612011400||R",
            "OBR|1|P200|F200|CTABD^CT abdomen^L",
            "IPC|ACC200|RP200|1.2.3.4.200|SPS-A|CT|P1^Arterial^L|CT1|ROOM1|CTSCANNER1",
            "IPC|ACC200|RP200|1.2.3.4.200|SPS-B|CT|P2^Venous^L|CT1|ROOM1|CTSCANNER1~CTSCANNER2",
        ]
    ).encode("utf-8")
    assert b"MSA|AA|OMI1" in send(server, text)
    assert stored(server, "OMI1")["status"] == "processed"
    items = _get(server, "/api/worklist", patient_id="OMI1")["items"]
    assert [i["scheduled_procedure_step_id"] for i in items] == ["SPS-A", "SPS-B"]
    assert items[1]["scheduled_station_ae_title"] == ["CTSCANNER1", "CTSCANNER2"]
    assert items[0]["item"]["0020000D"]["Value"] == ["1.2.3.4.200"]
    assert items[0]["item"]["00100010"]["Value"][0]["Alphabetic"] == "Müller^Jürgen^^Prof.^III"
    assert items[0]["item"]["00401003"]["Value"] == ["ROUTINE"]
    sps = items[0]["item"]["00400100"]["Value"][0]
    assert sps["00400008"]["Value"][0]["00080104"]["Value"] == ["Arterial"]
    assert _get(server, "/api/worklist", station_ae_title="CTSCANNER2")["items"][0]["scheduled_procedure_step_id"] == (
        "SPS-B"
    )


def test_dcm4che_orders_and_reports(server: ServerProcess) -> None:
    for name in ("OMI^O23-ImagingOrder.hl7", "ORU^R01-SR.hl7", "ORU^R01-PDF.hl7", "ORU^R01-CDA.hl7"):
        require((DCM4CHE / name).is_file(), str(DCM4CHE / name))
    assert b"MSA|AA|1001125" in send(server, (DCM4CHE / "OMI^O23-ImagingOrder.hl7").read_bytes())
    assert stored(server, "1001125")["status"] == "processed"
    (order,) = _get(server, "/api/orders", accession="AccessionNumber")["orders"]
    procedure = order["procedures"][0]
    assert procedure["study_instance_uid"] == "1.2.392.200036.9125.0.198811291108.7"
    for control, name in (
        ("1001129", "ORU^R01-SR.hl7"),
        ("1001128", "ORU^R01-PDF.hl7"),
        ("1001127", "ORU^R01-CDA.hl7"),
    ):
        assert f"MSA|AA|{control}".encode() in send(server, (DCM4CHE / name).read_bytes())
        assert stored(server, control)["status"] == "processed", stored(server, control)
    reports = _get(server, "/api/reports", accession="AccessionNumber")["reports"]
    kinds = {r["content_type"]: r for r in reports}
    assert set(kinds) == {"text/plain", "application/pdf", "text/xml"}
    assert "small mass in the left lung" in kinds["text/plain"]["text"]
    assert all(r["procedure"] == procedure["id"] for r in reports)
    assert "1.2.392.200036.9125.0.198811291108.7" in kinds["text/xml"]["study_instance_uids"]
    with http(server, accounts_of(server)["viewer"]) as client:  # readers see reports
        pdf = client.get(f"/api/reports/{kinds['application/pdf']['id']}/content")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")
        assert client.get("/api/reports/999999").status_code == 404
    # final, then final again: the second corrects the first (amended)
    history = _get(server, f"/api/orders/{order['id']}")["procedures"][0]["history"]
    assert [h["status"] for h in history] == ["scheduled", "final", "amended", "amended"]


def test_report_statuses_and_unlinked_results(server: ServerProcess) -> None:
    obr = "OBR|1|P300|F300|71020^CHEST^C4||||||||||||||ACC300|RP300|SPS1||||CR"
    send(server, _orm("O300", "P300", "ACC300", [obr]))
    assert stored(server, "O300")["status"] == "processed"

    def oru(control: str, status: str, accession: str = "ACC300") -> bytes:
        return (
            f"MSH|^~\\&|RPT|HOSP|PACS|HOSP|2026||ORU^R01|{control}|P|2.5.1\rPID|||ORD1^^^HOSP^MR\r"
            f"OBR|1|||71020^CHEST^C4|||20261128110000|||||||||||{accession}|||||||{status}\r"
            f"OBX|1|TX|IMP^Impression^L||No acute disease.\\.br\\Heart normal.||||||{status}\r"
        ).encode()

    for control, status in (("R1", "P"), ("R2", "F"), ("R3", "C")):
        send(server, oru(control, status))
        assert stored(server, control)["status"] == "processed"
    (order,) = _get(server, "/api/orders", accession="ACC300")["orders"]
    history = _get(server, f"/api/orders/{order['id']}")["procedures"][0]["history"]
    assert [h["status"] for h in history] == ["scheduled", "preliminary", "final", "amended"]
    (latest, *_) = _get(server, "/api/reports", accession="ACC300")["reports"]
    assert latest["status"] == "amended" and latest["text"] == "Impression:\nNo acute disease.\nHeart normal."
    # a result for an order the archive never saw is kept, unlinked
    send(server, oru("R4", "F", accession="NOORDER"))
    assert "no order" in stored(server, "R4")["error"]
    (unlinked,) = _get(server, "/api/reports", accession="NOORDER")["reports"]
    assert unlinked["procedure"] is None


def test_error_queue_reprocess_and_skip(server: ServerProcess) -> None:
    # a cancel for an order that does not exist fails, and holds back the patient's next message
    cancel = _orm("E1", "NOPE", "ACCE", ["OBR|1|NOPE||X||||||||||||||ACCE"], orc1="CA", patient="ERR1^^^HOSP^MR")
    send(server, cancel)
    assert stored(server, "E1")["status"] == "failed"
    send(server, _orm("E2", "P400", "ACC400", ["OBR|1|P400||X||||||||||||||ACC400|RP400"], patient="ERR1^^^HOSP^MR"))
    assert stored(server, "E2", timeout=2)["status"] == "received"
    queue = _get(server, "/api/hl7/errors")["failed"]
    mine = next(m for m in queue if m["control_id"] == "E1")
    assert mine["holds_back"] == 1 and "no order NOPE" in mine["error"]
    failed_id = mine["id"]
    with http(server, accounts_of(server)["admin"]) as client:
        # reprocessed as it is: it fails again
        assert client.post("/api/hl7/messages/reprocess", json={"ids": [failed_id]}).json() == {"requeued": [failed_id]}
        assert stored(server, "E1")["status"] == "failed"
        # skipped: the held message goes on
        assert client.post("/api/hl7/messages/skip", json={"ids": [failed_id]}).status_code == 200
        assert stored(server, "E2")["status"] == "processed"
        assert client.post("/api/hl7/messages/skip", json={"ids": [failed_id]}).status_code == 409  # already
        assert client.post("/api/hl7/messages/reprocess", json={"ids": [99999999]}).status_code == 404
        assert client.post("/api/hl7/messages/reprocess", json={"ids": []}).status_code == 400
    with http(server, accounts_of(server)["viewer"]) as client:
        assert client.post("/api/hl7/messages/skip", json={"ids": [failed_id]}).status_code == 403
    audit = server.cli("hl7", "errors", "--json")
    assert audit.returncode == 0 and "failed" in json.loads(audit.stdout)


def test_after_process_ack_names_the_field(server: ServerProcess) -> None:
    bad = b"MSH|^~\\&|STRICT|HOSP|PACS|HOSP|2026||ORM^O01|S1|P|2.3.1\rPID|||SP1^^^HOSP^MR\rORC|NW\rOBR|1\r"
    reply = send(server, bad)
    assert b"MSA|AE|S1" in reply and b"ERR||ORC^1^2|" in reply, reply
    good = _orm("S2", "P500", "ACC500", ["OBR|1|P500||X||||||||||||||ACC500|RP500"], app="STRICT")
    assert b"MSA|AA|S2" in send(server, good)
    assert stored(server, "S2", timeout=0)["status"] == "processed"  # applied before the ACK


def test_sender_mapping_per_facility(server: ServerProcess) -> None:
    obr = "OBR|1|P600||X||||||||||||||ACC600|RP600|SPS600|CTROOM7|||CT"
    east = _orm("M1", "P600", "ACC600", [obr]).replace(b"|RIS|HOSP|", b"|RIS|EAST|")
    send(server, east)
    assert stored(server, "M1")["status"] == "processed"
    (item,) = _get(server, "/api/worklist", patient_id="ORD1", modality="CT", station_ae_title="CTROOM7")["items"]
    assert item["scheduled_procedure_step_id"] == "SPS600"


def test_batch_file_and_enhanced_mode(server: ServerProcess) -> None:
    messages = [
        f"MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A08|B{n}|P|2.5.1\rPID|||BATCH{n}^^^HOSP^MR||Batch^{n}" for n in (1, 2)
    ]
    batch = "\r".join(
        ["FHS|^~\\&|HIS|HOSP", "BHS|^~\\&|HIS|HOSP|PACS|HOSP|2026||||BATCH7", *messages, "BTS|2", "FTS|1"]
    )
    reply = send(server, batch.encode())
    assert reply.count(b"MSA|AA|") == 2 and b"MSA|AA|B1" in reply and b"MSA|AA|B2" in reply
    assert reply.startswith(b"\x0bFHS|") and b"BTS|2" in reply and b"|BATCH7\r" in reply
    assert stored(server, "B2")["status"] == "processed"
    # enhanced mode (MSH-15 AL): a commit ACK once stored
    enhanced = b"MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A08|EN1|P|2.5.1|||AL|NE\rPID|||ENH^^^HOSP^MR||Enh^A\r"
    assert b"MSA|CA|EN1" in send(server, enhanced)


def test_unknown_senders_are_refused_beyond_loopback(tmp_path: Path) -> None:
    senders = [{"application": "RIS", "addresses": ["127.0.0.0/8"]}]
    running = start_server(
        tmp_path / "data", f"sqlite:///{tmp_path / 'index.sqlite3'}",
        extra_env={"OPENPACS_HL7__SENDERS": json.dumps(senders), "OPENPACS_HL7__ACCEPT_UNKNOWN_SENDERS": "false"},
    )  # fmt: skip
    try:
        known = b"MSH|^~\\&|RIS|HOSP|PACS|HOSP|2026||ADT^A08|K1|P|2.5.1\rPID|||K1^^^HOSP^MR||Known^A\r"
        assert b"MSA|AA|K1" in send(running, known)
        unknown = known.replace(b"|RIS|", b"|ROGUE|").replace(b"|K1|", b"|U1|")
        reply = send(running, unknown)
        assert b"MSA|AR|U1" in reply and b"not allowed" in reply
        assert stored(running, "U1")["status"] == "rejected"
    finally:
        running.stop()


def test_hl7_send_cli(server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "two.hl7"
    path.write_bytes(
        b"MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A08|CLI1|P|2.5.1\nPID|||CLI1^^^HOSP^MR||Cli^One\n"
        b"MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A08|CLI2|P|2.5.1\nPID|||CLI2^^^HOSP^MR||Cli^Two\n"
    )
    command = [sys.executable, "-m", "openpacs", "hl7", "send", f"127.0.0.1:{server.hl7_port}", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("AA") == 2
    assert stored(server, "CLI2")["status"] == "processed"
    broken = tmp_path / "broken.hl7"
    broken.write_bytes(b"MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A08|CLI3|P|9.9\rPID|||X\r")
    result = subprocess.run([*command[:-1], str(broken)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and "AR" in result.stdout
    closed = [*command[:-2], f"127.0.0.1:{free_port()}", str(path)]
    result = subprocess.run(closed, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and "error" in result.stderr.lower()
