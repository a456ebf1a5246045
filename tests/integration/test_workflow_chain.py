"""The IHE Scheduled Workflow chain end to end against one running server: ORM^O01 over MLLP,
worklist query (DCMTK findscu -W), MPPS IN PROGRESS, C-STORE, MPPS COMPLETED, storage
commitment, study stable, ORU^R01 final; the procedure's status history reads scheduled, in
progress, completed, final, and images stored after the final report make it amended.
Workflow rules fire on the way (assign a reading worklist on a STAT CT order), and
``openpacs workflow test`` replays a draft over the day's events."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    ModalityPerformedProcedureStep,
    StorageCommitmentPushModel,
)

from conftest import (
    ServerProcess,
    run_dcmtk,
    server_on,
    wait_for,
)
from hl7_client import send, stored
from web import accounts_of, http

pytestmark = pytest.mark.usefixtures("dcmtk")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from server_on(request.param, tmp_path_factory, {"OPENPACS_ROUTING__STABLE_AFTER_SECONDS": "0.5"})


def _orm(accession: str, today: str) -> bytes:
    return "\r".join(
        [
            f"MSH|^~\\&|RIS|HOSP|PACS|HOSP|{today}090000||ORM^O01|ORM{accession}|P|2.3.1",
            "PID|||CHAIN1^^^HOSP^MR||Chain^Carla||19750505|F",
            "PV1||O|RAD|||||1234^Welby^Marcus^^^Dr",
            f"ORC|NW|P{accession}|F{accession}||SC||^^^{today}1000^^S||||||||||RAD^Radiology",
            f"OBR|1|P{accession}|F{accession}|CTCH^CT chest^L||||||||||||||{accession}|RP{accession}|SPS{accession}||||CT",
        ]
    ).encode()


def _oru(accession: str, today: str) -> bytes:
    return "\r".join(
        [
            f"MSH|^~\\&|RIS|HOSP|PACS|HOSP|{today}120000||ORU^R01|ORU{accession}|P|2.3.1",
            "PID|||CHAIN1^^^HOSP^MR||Chain^Carla||19750505|F",
            f"OBR|1|P{accession}|F{accession}|CTCH^CT chest^L|||{today}110000|||||||||||{accession}|||||||F",
            "OBX|1|TX|GDT^Report||No acute findings.||||||F",
        ]
    ).encode()


def _procedure(server: ServerProcess, accession: str) -> dict[str, Any]:
    with http(server, accounts_of(server)["admin"]) as client:
        (order,) = client.get("/api/orders", params={"accession": accession}).json()["orders"]
        (procedure,) = order["procedures"]
        return dict(client.get(f"/api/procedures/{procedure['id']}").json())


def _ct(study_uid: str) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.PatientName = "CHAIN1", "Chain^Carla"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def test_order_to_final_report(server: ServerProcess, tmp_path: Path) -> None:
    today = date.today().strftime("%Y%m%d")
    server.cli("workflow", "add", "stat-ct", "--on", "order-received", "--when", "Modality=CT",
               "--when", "RequestedProcedurePriority==STAT", "--assign", "STAT CT")  # fmt: skip
    accession = "CHAIN100"
    assert b"MSA|AA" in send(server, _orm(accession, today))
    assert stored(server, f"ORM{accession}")["status"] == "processed"

    # the modality asks for its worklist
    query = tmp_path / "mwl.dcm"
    ds = Dataset()
    ds.PatientID, ds.AccessionNumber, ds.StudyInstanceUID, ds.PatientName = "CHAIN1", "", "", ""
    sps = Dataset()
    sps.Modality, sps.ScheduledProcedureStepStartDate, sps.ScheduledProcedureStepID = "CT", today, ""
    ds.ScheduledProcedureStepSequence = [sps]
    ds.save_as(query, implicit_vr=False, little_endian=True)
    out = run_dcmtk("findscu", "-v", "-W", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), str(query))
    assert "Received Final Find Response (Success)" in out.stderr and out.stderr.count("(Pending)") == 1, out.stderr
    study_uid = re.search(r"\(0020,000d\) UI \[([0-9.]+)\x00?\]", out.stderr)  # UI pads with NUL
    assert study_uid is not None and f"[{accession}]" in out.stderr and f"[SPS{accession} ]" in out.stderr, out.stderr
    study = study_uid.group(1)
    assert wait_for(lambda: _procedure(server, accession)["reading_worklists"]) == ["STAT CT"]

    reports: list[Dataset] = []
    ae = AE(ae_title="CTMOD")
    for context in (ModalityPerformedProcedureStep, StorageCommitmentPushModel, CTImageStorage):
        ae.add_requested_context(context)
    assoc = ae.associate(
        "127.0.0.1", server.dicom_port, ae_title=server.ae_title,
        ext_neg=[build_role(StorageCommitmentPushModel, scu_role=True, scp_role=True)],
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, lambda e: (reports.append(e.event_information), (0, None))[1])],
    )  # fmt: skip
    assert assoc.is_established
    mpps_uid = str(generate_uid())
    mpps = Dataset()
    ssa = Dataset()
    ssa.StudyInstanceUID, ssa.AccessionNumber, ssa.ScheduledProcedureStepID = study, accession, f"SPS{accession}"
    ssa.RequestedProcedureID = f"RP{accession}"
    mpps.ScheduledStepAttributesSequence = [ssa]
    mpps.PatientID, mpps.PatientName, mpps.Modality = "CHAIN1", "Chain^Carla", "CT"
    mpps.PerformedProcedureStepStatus = "IN PROGRESS"
    assert assoc.send_n_create(mpps, ModalityPerformedProcedureStep, mpps_uid)[0].Status == 0
    images = [_ct(study) for _ in range(2)]
    for image in images:
        assert assoc.send_c_store(image).Status == 0
    done = Dataset()
    done.PerformedProcedureStepStatus = "COMPLETED"
    assert assoc.send_n_set(done, ModalityPerformedProcedureStep, mpps_uid)[0].Status == 0
    info = Dataset()
    info.TransactionUID = generate_uid()
    refs = []
    for image in images:
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = image.SOPClassUID, image.SOPInstanceUID
        refs.append(ref)
    info.ReferencedSOPSequence = refs
    assert assoc.send_n_action(info, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")[0].Status == 0
    assert wait_for(lambda: reports, 10)
    assert len(reports[0].ReferencedSOPSequence) == 2 and "FailedSOPSequence" not in reports[0]
    assoc.release()

    # the study becomes stable; the report comes
    assert wait_for(lambda: _procedure(server, accession)["studies"])
    time.sleep(1.5)
    assert b"MSA|AA" in send(server, _oru(accession, today))
    assert stored(server, f"ORU{accession}")["status"] == "processed"
    procedure = _procedure(server, accession)
    assert [h["status"] for h in procedure["history"]] == ["scheduled", "in-progress", "completed", "final"]
    assert procedure["studies"][0]["study_instance_uid"] == study

    # a draft rule replayed over today's events
    draft = tmp_path / "draft.json"
    draft.write_text(json.dumps([{"name": "final-review", "event": "report-final",
                                   "actions": [{"kind": "assign", "worklist": "QA review"}]}]))  # fmt: skip
    shown = json.loads(server.cli("workflow", "test", str(draft), "--days", "1", "--json").stdout)
    assert [(f["rule"], f["accession"]) for f in shown] == [("final-review", accession)]
    assert shown[0]["actions"] == ["assign to reading worklist 'QA review'"]
    assert _procedure(server, accession)["reading_worklists"] == ["STAT CT"]  # the draft changed nothing

    # an image added after the final report: amended
    late = tmp_path / "late.dcm"
    _ct(study).save_as(late, enforce_file_format=True)
    run_dcmtk("storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), str(late))
    assert wait_for(lambda: _procedure(server, accession)["status"] == "amended")
    history = server.cli("workflow", "history", "stat-ct", "--json").stdout
    assert json.loads(history)[0]["version"] == 1
