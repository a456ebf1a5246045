"""MPPS and storage commitment with dcmjs-dimse (npm) as an independent client: N-CREATE,
N-SET COMPLETED, a late N-SET refused; N-ACTION answered by an N-EVENT-REPORT on the same
association and, when the requester leaves at once, on an association the server opens to
it (PS3.4 F.7, J.3)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from conftest import ServerProcess, free_port, run_dcmtk, server_on
from dcmjs import commit, mpps_create, mpps_set
from web import accounts_of, http

pytestmark = pytest.mark.usefixtures("dcmtk")
CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from server_on("sqlite", tmp_path_factory, {"OPENPACS_ROUTING__RETRY_BASE_SECONDS": "0.2"})


def _stored(server: ServerProcess, folder: Path, count: int) -> list[tuple[str, str]]:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    refs = []
    for n in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / f"{n}.dcm", enforce_file_format=True)
        refs.append((CT, str(ds.SOPInstanceUID)))
    out = run_dcmtk(
        "storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), *map(str, folder.glob("*.dcm"))
    )
    assert out.returncode == 0, out.stderr
    return refs


def test_mpps_with_dcmjs_dimse(server: ServerProcess) -> None:
    uid = str(generate_uid())
    created = {
        "PatientID": "DJS1",
        "PatientName": "Dcmjs^Dimse",
        "Modality": "CT",
        "PerformedProcedureStepID": "PPS-DJS",
        "PerformedProcedureStepStatus": "IN PROGRESS",
        "ScheduledStepAttributesSequence": [],
    }
    assert mpps_create(server.dicom_port, server.ae_title, "DCMJS", uid, created)["status"] == 0
    assert mpps_create(server.dicom_port, server.ae_title, "DCMJS", uid, created)["status"] == 0x0111
    assert (
        mpps_set(server.dicom_port, server.ae_title, "DCMJS", uid, {"PerformedProcedureStepDescription": "x"})["status"]
        == 0
    )
    completed = {"PerformedProcedureStepStatus": "COMPLETED", "PerformedProcedureStepEndTime": "101500"}
    assert mpps_set(server.dicom_port, server.ae_title, "DCMJS", uid, completed)["status"] == 0
    late = mpps_set(server.dicom_port, server.ae_title, "DCMJS", uid, {"PerformedProcedureStepDescription": "y"})
    assert late["status"] == 0x0110 and "COMPLETED" in late["error_comment"]
    with http(server, accounts_of(server)["admin"]) as client:
        shown = client.get(f"/api/mpps/{uid}").json()
    assert shown["status"] == "COMPLETED" and shown["station_ae_title"] == "DCMJS"
    assert shown["attrs"]["00400254"]["Value"] == ["x"]  # the N-SET before completion was applied


def test_storage_commitment_on_the_same_association(server: ServerProcess, tmp_path: Path) -> None:
    refs = _stored(server, tmp_path, 2)
    unknown = (CT, str(generate_uid()))
    transaction = str(generate_uid())
    result = commit(server.dicom_port, server.ae_title, "DCMJS", transaction, [*refs, unknown])
    assert result["action_status"] == 0 and result["association"] == "same", result
    assert result["event_type"] == 2 and result["transaction_uid"] == transaction
    assert sorted(map(tuple, result["committed"])) == sorted(refs)
    assert result["failed"] == [[*unknown, 0x0112]]


def test_storage_commitment_on_an_association_of_the_server(server: ServerProcess, tmp_path: Path) -> None:
    refs = _stored(server, tmp_path, 3)
    listen = free_port()
    server.cli("node", "add", "dcmjs-modality", "--ae-title", "DCMJSMOD", "--host", "127.0.0.1", "--port", str(listen))
    transaction = str(generate_uid())
    result = commit(server.dicom_port, server.ae_title, "DCMJSMOD", transaction, refs, listen_port=listen)
    assert result["action_status"] == 0 and result["association"] == "separate", result
    assert result["event_type"] == 1 and sorted(map(tuple, result["committed"])) == sorted(refs)
    with http(server, accounts_of(server)["admin"]) as client:
        deadline = time.monotonic() + 10
        while True:
            (mine,) = [
                r for r in client.get("/api/commitments").json()["requests"] if r["transaction_uid"] == transaction
            ]
            if mine["state"] == "reported" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert mine["state"] == "reported" and mine["committed"] == 3
