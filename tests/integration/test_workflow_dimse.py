"""The workflow's DICOM services against a running server, on SQLite and PostgreSQL:
Modality Worklist (DCMTK findscu -W with DCMTK's own 10 items and 13 queries, which
wlmscpfs and Orthanc answer with 10,10,0,10,0,6,0,0,0,0,10,10,0 matches; pynetdicom
queries), MPPS (N-CREATE, N-SET, final states, refusals) and Storage Commitment (report on
the request's association and on one of ours; failure reasons) with pynetdicom."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from datetime import date, timedelta
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
    ModalityWorklistInformationFind,
    MRImageStorage,
    StorageCommitmentPushModel,
)

from conftest import (
    ServerProcess,
    free_port,
    run_dcmtk,
    server_on,
    start_server,
)
from web import accounts_of, http

pytestmark = pytest.mark.usefixtures("dcmtk")

DCMTK_EXAMPLES = Path("/usr/share/doc/dcmtk/examples")
EXPECTED_COUNTS = [10, 10, 0, 10, 0, 6, 0, 0, 0, 0, 10, 10, 0]
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
ENV = {
    "OPENPACS_WORKFLOW__WORKLIST_RETENTION_DAYS": "0",
    "OPENPACS_ROUTING__STABLE_AFTER_SECONDS": "0.5",
    "OPENPACS_ROUTING__RETRY_BASE_SECONDS": "0.2",
    "OPENPACS_ROUTING__RETRY_MAX_SECONDS": "1",
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from server_on(request.param, tmp_path_factory, ENV)


def _ae(calling: str = "MODALITY1") -> AE:
    ae = AE(ae_title=calling)
    for context in (ModalityWorklistInformationFind, ModalityPerformedProcedureStep, StorageCommitmentPushModel,
                    CTImageStorage, MRImageStorage):  # fmt: skip
        ae.add_requested_context(context)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    return ae


def _worklist(server: ServerProcess, query: Dataset) -> tuple[int, list[Dataset]]:
    assoc = _ae().associate("127.0.0.1", server.dicom_port, ae_title=server.ae_title)
    assert assoc.is_established
    answers, final = [], -1
    for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
        if status is None:
            break
        if status.Status in (0xFF00, 0xFF01):
            answers.append(identifier)
        else:
            final = int(status.Status)
    assoc.release()
    return final, answers


def _query(**step: Any) -> Dataset:
    ds = Dataset()
    ds.PatientName = ""
    ds.PatientID = ""
    ds.AccessionNumber = ""
    ds.StudyInstanceUID = ""
    ds.RequestedProcedureID = ""
    sps = Dataset()
    sps.ScheduledStationAETitle = ""
    sps.ScheduledProcedureStepStartDate = ""
    sps.ScheduledProcedureStepStartTime = ""
    sps.Modality = ""
    sps.ScheduledProcedureStepID = ""
    for keyword, value in step.items():
        setattr(sps, keyword, value)
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def _item(patient_id: str, name: str, accession: str, step_id: str, station: str, day: str, time_: str,
          study_uid: str = "") -> dict[str, Any]:  # fmt: skip
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = name, patient_id, "19700101", "F"
    ds.AccessionNumber, ds.RequestedProcedureID = accession, f"RP{accession}"
    ds.RequestedProcedureDescription = "CT chest"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.RequestedProcedurePriority = "STAT"
    sps = Dataset()
    sps.ScheduledStationAETitle = station
    sps.ScheduledProcedureStepStartDate, sps.ScheduledProcedureStepStartTime = day, time_
    sps.Modality, sps.ScheduledProcedureStepID = "CT", step_id
    sps.ScheduledProcedureStepDescription = "chest"
    sps.ScheduledPerformingPhysicianName = "Rad^Ray"
    ds.ScheduledProcedureStepSequence = [sps]
    return dict(ds.to_json_dict())


def _create(server: ServerProcess, item: dict[str, Any]) -> dict[str, Any]:
    with http(server, accounts_of(server)["admin"]) as client:
        response = client.post("/api/worklist", json=item)
        assert response.status_code == 201, response.text
        (entry,) = response.json()["items"]
        return dict(entry)


def test_dcmtk_worklist_samples_give_the_counts_of_wlmscpfs(server: ServerProcess, tmp_path: Path) -> None:
    items = sorted((DCMTK_EXAMPLES / "wlistdb" / "OFFIS").glob("wklist*.dump"))
    queries = [DCMTK_EXAMPLES / "wlistqry" / f"wlistqry{n}.dump" for n in range(13)]
    assert len(items) == 10 and all(q.exists() for q in queries), "DCMTK's worklist examples are missing"
    folder = tmp_path / "wlistdb"
    folder.mkdir()
    for dump in items:
        run_dcmtk("dump2dcm", str(dump), str(folder / f"{dump.stem}.wl"))
    imported = server.cli("worklist", "import", str(folder))
    assert imported.stdout.count(": entry ") == 10, imported.stdout
    counts = []
    for n, dump in enumerate(queries):
        query = tmp_path / f"q{n}.dcm"
        run_dcmtk("dump2dcm", str(dump), str(query))
        out = run_dcmtk("findscu", "-v", "-W", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port),
                        str(query)).stderr  # fmt: skip
        assert "Received Final Find Response (Success)" in out, out
        counts.append(out.count("(Pending)"))
    assert counts == EXPECTED_COUNTS
    # importing the same files again changes the entries, it does not add any
    server.cli("worklist", "import", str(folder))
    listed = server.cli("worklist", "list", "--json").stdout
    assert listed.count('"scheduled_procedure_step_id"') >= 10


def test_worklist_matching_return_keys_and_housekeeping(server: ServerProcess) -> None:
    today = date.today().strftime("%Y%m%d")
    tomorrow = (date.today() + timedelta(days=1)).strftime("%Y%m%d")
    ct1 = _create(server, _item("WL1", "Müller^Anna", "WLA1", "WLS1", "CT_ROOM1", today, "083000"))
    _create(server, _item("WL2", "Smith^John", "WLA2", "WLS2", "CT_ROOM1", today, "143000"))
    _create(server, _item("WL3", "Smith^Jane", "WLA3", "WLS3", "CT_ROOM2", tomorrow, "090000"))
    status, found = _worklist(server, _query(ScheduledStationAETitle="CT_ROOM1", ScheduledProcedureStepStartDate=today))
    assert status == 0 and sorted(a.AccessionNumber for a in found) == ["WLA1", "WLA2"]
    first = next(a for a in found if a.AccessionNumber == "WLA1")
    assert str(first.PatientName) == "Müller^Anna"  # UTF-8 answered intact
    assert first.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID == "WLS1"
    assert "RequestedProcedureID" in first and first.RequestedProcedureID == "RPWLA1"
    assert "ReferringPhysicianName" not in first  # only the keys asked for come back
    # a station AE title with an underscore is not a LIKE wildcard
    assert len(_worklist(server, _query(ScheduledStationAETitle="CTXROOM1"))[1]) == 0
    # wildcard name, date range with time range combined (PS3.4 C.2.2.2.5.1)
    query = _query(ScheduledProcedureStepStartDate=f"{today}-{tomorrow}", ScheduledProcedureStepStartTime="1000-0930")
    query.PatientName = "SMITH*"
    assert sorted(a.AccessionNumber for a in _worklist(server, query)[1]) == ["WLA2", "WLA3"]
    # a completed or cancelled step leaves the worklist
    with http(server, accounts_of(server)["admin"]) as client:
        done = client.post(f"/api/worklist/{ct1['id']}/status", json={"status": "COMPLETED"})
        assert done.status_code == 200 and done.json()["status"] == "COMPLETED"
        (wla2,) = client.get("/api/worklist", params={"patient_id": "WL2"}).json()["items"]
        assert client.delete(f"/api/worklist/{wla2['id']}").json()["status"] == "DISCONTINUED"
        bad = client.post("/api/worklist", json={"00100020": {"vr": "LO", "Value": ["X"]}})
        assert bad.status_code == 400 and "Scheduled Procedure Step Sequence" in bad.text
        assert client.post("/api/worklist", json={"zz": 1}).status_code == 400
        assert client.post(f"/api/worklist/{ct1['id']}/status", json={"status": "NOPE"}).status_code == 400
    status, found = _worklist(server, _query(ScheduledStationAETitle="CT_ROOM1", ScheduledProcedureStepStartDate=today))
    assert status == 0 and found == []


def test_bad_worklist_queries_are_refused_and_the_server_stays_up(server: ServerProcess) -> None:
    for bad in ("2026XX01", "-"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns of the invalid DA we mean to send
            status, found = _worklist(server, _query(ScheduledProcedureStepStartDate=bad))
        assert status == 0xA900 and found == []
    out = run_dcmtk("echoscu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port))
    assert out.returncode == 0


def _mpps(patient_id: str, study_uid: str, step_id: str, accession: str, status: str = "IN PROGRESS") -> Dataset:
    ds = Dataset()
    ssa = Dataset()
    if step_id:
        ssa.StudyInstanceUID, ssa.ScheduledProcedureStepID, ssa.AccessionNumber = study_uid, step_id, accession
        ds.ScheduledStepAttributesSequence = [ssa]
    else:
        ds.ScheduledStepAttributesSequence = []
    ds.PatientName, ds.PatientID = "Doe^Pat", patient_id
    ds.PerformedProcedureStepID, ds.Modality = "PPS1", "CT"
    ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime = "20261128", "100000"
    ds.PerformedProcedureStepStatus = status
    return ds


def test_mpps_in_progress_completed_and_refusals(server: ServerProcess) -> None:
    today = date.today().strftime("%Y%m%d")
    study = str(generate_uid())
    entry = _create(server, _item("MP1", "Doe^Pat", "MPA1", "MPS1", "CT_ROOM1", today, "100000", study))
    assoc = _ae().associate("127.0.0.1", server.dicom_port, ae_title=server.ae_title)
    assert assoc.is_established
    uid = str(generate_uid())
    status, _ = assoc.send_n_create(_mpps("MP1", study, "MPS1", "MPA1"), ModalityPerformedProcedureStep, uid)
    assert status.Status == 0
    # the step is STARTED: it stays on the worklist for the modality
    with http(server, accounts_of(server)["admin"]) as client:
        shown = client.get(f"/api/worklist/{entry['id']}").json()
        assert shown["status"] == "STARTED"
        procedure = client.get(f"/api/procedures/{entry['procedure']}").json()
        assert procedure["status"] == "in-progress" and procedure["studies"][0]["linked_by"] == "mpps"
    update = Dataset()
    update.PerformedSeriesSequence = []
    assert assoc.send_n_set(update, ModalityPerformedProcedureStep, uid)[0].Status == 0
    done = Dataset()
    done.PerformedProcedureStepStatus = "COMPLETED"
    done.PerformedProcedureStepEndDate, done.PerformedProcedureStepEndTime = "20261128", "101500"
    assert assoc.send_n_set(done, ModalityPerformedProcedureStep, uid)[0].Status == 0
    late = assoc.send_n_set(update, ModalityPerformedProcedureStep, uid)[0]
    assert late.Status == 0x0110 and "COMPLETED" in late.ErrorComment
    assert assoc.send_n_set(update, ModalityPerformedProcedureStep, str(generate_uid()))[0].Status == 0x0112
    assert (
        assoc.send_n_create(_mpps("MP1", study, "MPS1", "MPA1"), ModalityPerformedProcedureStep, uid)[0].Status
        == 0x0111
    )
    wrong = _mpps("MP1", study, "MPS1", "MPA1", status="COMPLETED")
    assert assoc.send_n_create(wrong, ModalityPerformedProcedureStep, str(generate_uid()))[0].Status == 0x0106
    # an unscheduled acquisition: kept, linked to nothing
    unscheduled = str(generate_uid())
    assert assoc.send_n_create(_mpps("MP9", "", "", ""), ModalityPerformedProcedureStep, unscheduled)[0].Status == 0
    assoc.release()
    with http(server, accounts_of(server)["admin"]) as client:
        history = [h["status"] for h in client.get(f"/api/procedures/{entry['procedure']}").json()["history"]]
        assert history == ["scheduled", "in-progress", "completed"]
        assert client.get(f"/api/worklist/{entry['id']}").json()["status"] == "COMPLETED"
        shown = client.get(f"/api/mpps/{uid}").json()
        assert shown["status"] == "COMPLETED" and shown["study_instance_uids"] == [study]
        assert client.get(f"/api/mpps/{unscheduled}").json()["study_instance_uids"] == []
        waiting = client.get("/api/procedures", params={"status": "completed", "older_than_minutes": 0}).json()
        assert entry["procedure"] in [p["id"] for p in waiting["procedures"]]
        assert (
            client.get("/api/procedures", params={"status": "completed", "older_than_minutes": 120}).json()[
                "procedures"
            ]
            == []
        )


def _ct(study_uid: str) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def _refs(pairs: list[tuple[str, str]]) -> Dataset:
    info = Dataset()
    info.TransactionUID = generate_uid()
    items = []
    for sop_class, uid in pairs:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, uid
        items.append(item)
    info.ReferencedSOPSequence = items
    return info


def test_storage_commitment_on_the_same_association_with_failure_reasons(server: ServerProcess) -> None:
    reports: list[tuple[int, Dataset]] = []

    def on_report(event: Any) -> tuple[int, None]:
        reports.append((int(event.event_type), event.event_information))
        return 0, None

    ae = _ae("COMMITTER")
    assoc = ae.associate(
        "127.0.0.1", server.dicom_port, ae_title=server.ae_title,
        ext_neg=[build_role(StorageCommitmentPushModel, scu_role=True, scp_role=True)],
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
    )  # fmt: skip
    assert assoc.is_established
    study = str(generate_uid())
    stored = [_ct(study) for _ in range(3)]
    for ds in stored:
        assert assoc.send_c_store(ds).Status == 0
    pairs = [(str(ds.SOPClassUID), str(ds.SOPInstanceUID)) for ds in stored]
    never = str(generate_uid())
    info = _refs([*pairs, (CTImageStorage, never), (MRImageStorage, pairs[0][1])])
    status, _ = assoc.send_n_action(info, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)
    assert status.Status == 0
    deadline = time.monotonic() + 10
    while not reports and time.monotonic() < deadline:
        time.sleep(0.01)
    (event_type, event), *_ = reports
    assert event_type == 2 and event.TransactionUID == info.TransactionUID
    assert sorted(i.ReferencedSOPInstanceUID for i in event.ReferencedSOPSequence) == sorted(u for _, u in pairs)
    reasons = {(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID): i.FailureReason for i in event.FailedSOPSequence}
    assert reasons == {(CTImageStorage, never): 0x0112, (MRImageStorage, pairs[0][1]): 0x0119}
    # the same Transaction UID again: every instance failed, 0x0131
    reports.clear()
    again = _refs(pairs[:1])
    again.TransactionUID = info.TransactionUID
    assert assoc.send_n_action(again, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)[0].Status == 0
    deadline = time.monotonic() + 10
    while not reports and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [i.FailureReason for i in reports[0][1].FailedSOPSequence] == [0x0131]
    # a wrong action type and a wrong instance are refused
    assert assoc.send_n_action(_refs(pairs), 2, StorageCommitmentPushModel, COMMITMENT_INSTANCE)[0].Status == 0x0123
    assert assoc.send_n_action(_refs(pairs), 1, StorageCommitmentPushModel, "1.2.3")[0].Status == 0x0117
    assoc.release()
    # a committed instance is a promise: no delete without force; a rejection (IOCM) is allowed
    with http(server, accounts_of(server)["admin"]) as client:
        refused = client.delete(f"/api/instances/{pairs[0][1]}")
        assert refused.status_code == 409 and "COMMITTER" in refused.text
        soft = client.post("/api/qa/delete", json={"level": "instance", "uid": pairs[1][1], "reason": "test"})
        assert soft.status_code == 409 and "reject them" in soft.text
        rejected = client.post(
            "/api/qa/reject", json={"level": "instance", "uid": pairs[1][1], "reason": "test", "code": "113001"}
        )
        assert rejected.status_code == 200, rejected.text
        forced = client.delete(f"/api/instances/{pairs[0][1]}", params={"force": "true", "reason": "test"})
        assert forced.status_code == 200 and forced.json()["instances"] == 1


def test_storage_commitment_reported_on_a_new_association_when_the_requester_refuses_it_on_its_own(
    server: ServerProcess,
) -> None:
    reports: list[Dataset] = []
    got = threading.Event()

    def on_report(event: Any) -> tuple[int, None]:
        reports.append(event.event_information)
        got.set()
        return 0, None

    port = free_port()
    listener = AE(ae_title="LEAVER")
    listener.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    scp = listener.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    try:
        server.cli("node", "add", f"leaver{port}", "--ae-title", "LEAVER", "--host", "127.0.0.1", "--port", str(port))
        ae = _ae("LEAVER")
        # the requester does not take reports on its own association: it refuses the one sent there
        assoc = ae.associate(
            "127.0.0.1", server.dicom_port, ae_title=server.ae_title,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, lambda _event: (0x0110, None))],
        )  # fmt: skip
        assert assoc.is_established
        ds = _ct(str(generate_uid()))
        assert assoc.send_c_store(ds).Status == 0
        info = _refs([(str(ds.SOPClassUID), str(ds.SOPInstanceUID))])
        assert assoc.send_n_action(info, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)[0].Status == 0
        assoc.release()
        assert got.wait(20), server.log()[-3000:]
        (event,) = reports
        assert event.TransactionUID == info.TransactionUID
        assert [i.ReferencedSOPInstanceUID for i in event.ReferencedSOPSequence] == [ds.SOPInstanceUID]
        with http(server, accounts_of(server)["admin"]) as client:
            deadline = time.monotonic() + 10
            while True:
                shown = client.get("/api/commitments").json()["requests"]
                mine = [r for r in shown if r["transaction_uid"] == info.TransactionUID]
                if (mine and mine[0]["state"] == "reported") or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert mine[0]["state"] == "reported" and mine[0]["committed"] == 1
    finally:
        scp.shutdown()


def test_deep_verification_after_commitment_finds_a_damaged_file(tmp_path: Path) -> None:
    env = {**ENV, "OPENPACS_WORKFLOW__COMMITMENT_VERIFY": "true"}
    running = start_server(tmp_path / "data", f"sqlite:///{tmp_path / 'index.sqlite3'}", extra_env=env)
    try:
        reported = threading.Event()

        def on_report(_event: Any) -> tuple[int, None]:
            reported.set()
            return 0, None

        ae = _ae("VERIFIER")
        assoc = ae.associate(
            "127.0.0.1", running.dicom_port, ae_title=running.ae_title,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
        )  # fmt: skip
        stored = [_ct(str(generate_uid())) for _ in range(2)]
        for ds in stored:
            assert assoc.send_c_store(ds).Status == 0
        # damage the second file behind the archive's back, then ask for commitment
        damaged = next(
            p for p in (tmp_path / "data").rglob("*") if p.is_file() and str(stored[1].SOPInstanceUID).encode() in
            p.read_bytes()
        )  # fmt: skip
        damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
        info = _refs([(str(ds.SOPClassUID), str(ds.SOPInstanceUID)) for ds in stored])
        assert assoc.send_n_action(info, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)[0].Status == 0
        assert reported.wait(10)  # the report comes on this association; release only after it
        assoc.release()
        with http(running, accounts_of(running)["admin"]) as client:
            deadline = time.monotonic() + 20
            while True:
                alerts = [a for a in client.get("/api/alerts").json() if a["kind"] == "commitment-verify-failed"]
                if alerts or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert alerts and alerts[0]["details"]["instances"] == [stored[1].SOPInstanceUID], running.log()[-2000:]
    finally:
        running.stop()
