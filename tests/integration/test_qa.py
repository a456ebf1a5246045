"""Corrections on a running server: `openpacs qa` beside it, /api/qa, and what DCMTK's findscu
and getscu, and dicomweb-client, show after each operation and after its undo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import ServerProcess, StoreScp, findscu_studies, run_dcmtk
from web import accounts_of, dicomweb

pytestmark = pytest.mark.usefixtures("dcmtk")


def _store(server: ServerProcess, tmp_path: Path, patient_id: str, name: str) -> pydicom.Dataset:
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.OtherPatientIDsSequence
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID, ds.PatientName = patient_id, name
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    run_dcmtk("storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), str(path))
    return ds


def _get(server: ServerProcess, study: str, folder: Path) -> pydicom.Dataset:
    folder.mkdir()
    out = run_dcmtk(
        "getscu", "-v", "-S", "-aec", server.ae_title, "-od", str(folder), "127.0.0.1", str(server.dicom_port),
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
    ).stderr  # fmt: skip
    assert "Received C-GET Response (Success)" in out and "Number of Failed Suboperations    : 0" in out, out
    (path,) = list(folder.iterdir())
    return pydicom.dcmread(path)


def _qa(server: ServerProcess, *args: str) -> dict[str, Any]:
    result = server.cli("qa", *args, "--json")
    return dict(json.loads(result.stdout))


def test_cli_update_shows_in_findscu_getscu_and_qido_and_undo_restores_the_bytes(
    server: ServerProcess, tmp_path: Path
) -> None:
    patient = f"QA{generate_uid()[-8:]}"
    original = _store(server, tmp_path, patient, "WRONG^NAME")
    before = _get(server, original.StudyInstanceUID, tmp_path / "before")
    assert "OriginalAttributesSequence" not in before

    preview = _qa(server, "update-patient", patient, "--set", "PatientName=RIGHT^NAME", "--reason", "typo",
                  "--dry-run")  # fmt: skip
    assert preview["dry_run"] and preview["id"] is None
    assert preview["summary"]["changes"][0]["new"] == "RIGHT^NAME"
    assert "WRONG^NAME" in findscu_studies(server, patient)  # the dry run changed nothing

    op = _qa(server, "update-patient", patient, "--set", "PatientName=RIGHT^NAME", "--reason", "typo")
    assert op["id"] and not op["dry_run"]
    assert "RIGHT^NAME" in findscu_studies(server, patient)
    after = _get(server, original.StudyInstanceUID, tmp_path / "after")
    assert after.PatientName == "RIGHT^NAME"
    assert after.OriginalAttributesSequence[0].ModifiedAttributesSequence[0].PatientName == "WRONG^NAME"
    client = dicomweb(server, accounts_of(server)["viewer"])
    (study,) = client.search_for_studies(search_filters={"PatientID": patient}, fields=["PatientName"])
    assert study["00100010"]["Value"] == [{"Alphabetic": "RIGHT^NAME"}]
    (metadata,) = client.retrieve_study_metadata(original.StudyInstanceUID)
    assert metadata["00100010"]["Value"] == [{"Alphabetic": "RIGHT^NAME"}]

    # a second copy under the same ID with another name lands in the inbox; the fix resolves it
    _store(server, tmp_path, patient, "WRONGER^NAME")
    (conflict,) = [
        e for e in json.loads(server.cli("qa", "inbox", "--json").stdout) if e["patient"]["patient_id"] == patient
    ]
    assert "WRONGER^NAME" in server.cli("qa", "inbox").stdout
    _qa(server, "dismiss-conflict", str(conflict["id"]), "--reason", "same person")
    assert patient not in server.cli("qa", "inbox").stdout
    listed = server.cli("qa", "list").stdout
    assert "update-patient" in listed and "typo" in listed
    _qa(server, "undo", str(op["id"]), "--reason", "it was right")
    assert "WRONG^NAME" in findscu_studies(server, patient)
    again = _get(server, original.StudyInstanceUID, tmp_path / "again")
    assert (tmp_path / "again").iterdir().__next__().read_bytes() == next((tmp_path / "before").iterdir()).read_bytes()
    assert again.PatientName == "WRONG^NAME"


def test_rest_merge_needs_an_admin_and_a_reason_and_previews(server: ServerProcess, tmp_path: Path) -> None:
    source, target = f"QS{generate_uid()[-8:]}", f"QT{generate_uid()[-8:]}"
    _store(server, tmp_path, source, "DOE^JOHN")
    _store(server, tmp_path, target, "DOE^JOHN")
    accounts = accounts_of(server)
    body = {"source": {"patient_id": source}, "target": {"patient_id": target}, "reason": "duplicate"}
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        denied = http.post("/api/qa/merge-patients", json=body, headers=accounts["technologist"].bearer)
        assert denied.status_code == 403
        no_reason = http.post("/api/qa/merge-patients", json={**body, "reason": ""}, headers=accounts["admin"].bearer)
        assert no_reason.status_code == 400 and "reason" in no_reason.json()["error"]
        preview = http.post(
            "/api/qa/merge-patients", params={"dry_run": "true"}, json=body, headers=accounts["admin"].bearer
        )
        assert preview.status_code == 200 and preview.json()["dry_run"] and preview.json()["id"] is None
        assert source in findscu_studies(server, source)
        done = http.post("/api/qa/merge-patients", json=body, headers=accounts["admin"].bearer).json()
        assert "Received Final Find Response" in findscu_studies(server, target)
        assert source not in findscu_studies(server, source).split("PatientID")[-1]
        shown = http.get(f"/api/qa/operations/{done['id']}", headers=accounts["admin"].bearer).json()
        assert shown["kind"] == "merge-patients" and shown["actor"]["id"] == accounts["admin"].name
        missing = http.post(
            "/api/qa/move-study",
            json={"study": "1.2.3", "to_patient": {"patient_id": target}, "reason": "x"},
            headers=accounts["admin"].bearer,
        )
        assert missing.status_code == 404 and "no study" in missing.json()["error"]
        hostile = http.post(
            "/api/qa/update-patient",
            json={"patient_id": target, "set": {"PatientName": "A" * 100000}, "reason": "x"},
            headers=accounts["admin"].bearer,
        )
        assert hostile.status_code == 400
    assert server.process.poll() is None


def test_rejected_study_leaves_findscu_getscu_and_qido_and_undo_brings_it_back(
    server: ServerProcess, tmp_path: Path
) -> None:
    patient = f"QR{generate_uid()[-8:]}"
    original = _store(server, tmp_path, patient, "REJECT^ME")
    study = original.StudyInstanceUID
    op = _qa(server, "reject", study, "--code", "113037", "--reason", "wrong patient on the images")
    assert op["summary"]["affected"]["instances"] == 1
    assert study not in findscu_studies(server, patient)
    out = run_dcmtk(
        "getscu", "-v", "-S", "-aec", server.ae_title, "-od", str(tmp_path), "127.0.0.1", str(server.dicom_port),
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
    ).stderr  # fmt: skip
    assert "Number of Completed Suboperations : 1" not in out, out
    client = dicomweb(server, accounts_of(server)["viewer"])
    assert client.search_for_studies(search_filters={"StudyInstanceUID": study}) == []
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        admin = accounts_of(server)["admin"].bearer
        bad = http.post(
            "/api/qa/reject", json={"level": "study", "uid": study, "code": "12345", "reason": "x"}, headers=admin
        )
        assert bad.status_code == 400
        shown = http.get("/api/qa/hidden", params={"uid": study}, headers=admin).json()
        assert {(h["sop_instance_uid"], h["hidden"]) for h in shown if h["hidden"] == "113037"} == {
            (original.SOPInstanceUID, "113037")
        }
        assert any(h["hidden"] == "rejection-note" for h in shown)
        listed = server.cli("qa", "hidden", study).stdout
        assert "113037" in listed and "Patient Safety" in listed
        viewer = accounts_of(server)["viewer"].bearer
        assert http.get("/api/qa/hidden", params={"uid": study}, headers=viewer).status_code == 403
        restored = http.post(
            "/api/qa/undo", json={"operation": op["id"], "reason": "it was the right patient"}, headers=admin
        )
        assert restored.status_code == 200, restored.text
    assert study in findscu_studies(server, patient)
    assert len(client.search_for_studies(search_filters={"StudyInstanceUID": study})) == 1


def test_a_study_moved_while_it_is_being_received_keeps_every_instance(server: ServerProcess, tmp_path: Path) -> None:
    """Instances that arrive after a move follow it: none is lost or left under the old patient."""
    import subprocess

    from conftest import dcmtk_tool
    from corpus import generate

    paths = generate("small", tmp_path / "study", 300, seed=7, per_series=150)
    first = pydicom.dcmread(paths[0], stop_before_pixels=True)
    study, source = str(first.StudyInstanceUID), str(first.PatientID)
    target = f"QM{generate_uid()[-8:]}"
    _store(server, tmp_path, target, "TARGET^TINA")
    run_dcmtk("storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), str(paths[0]))
    sender = subprocess.Popen(
        [dcmtk_tool("storescu"), "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), *map(str, paths[1:])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"},
    )
    _qa(server, "move-study", study, "--to-patient", target, "--reason", "sent under the wrong patient")
    _, err = sender.communicate(timeout=120)
    assert sender.returncode == 0, err.decode()[-500:]
    client = dicomweb(server, accounts_of(server)["viewer"])
    (found,) = client.search_for_studies(
        search_filters={"StudyInstanceUID": study}, fields=["PatientID", "NumberOfStudyRelatedInstances"]
    )
    assert found["00100020"]["Value"] == [target]
    assert found["00201208"]["Value"] == [300]
    assert client.search_for_studies(search_filters={"PatientID": source}) == []


def test_series_moved_to_another_study_shows_new_uids_everywhere_and_undo_restores_the_bytes(
    server: ServerProcess, tmp_path: Path
) -> None:
    patient = f"QV{generate_uid()[-8:]}"
    first = _store(server, tmp_path, patient, "MOVE^SERIES")
    second = _store(server, tmp_path, patient, "MOVE^SERIES")
    before = _get(server, first.StudyInstanceUID, tmp_path / "before")

    preview = _qa(server, "move-series", first.SeriesInstanceUID, "--to-study", second.StudyInstanceUID,
                  "--reason", "acquired under the wrong order", "--dry-run")  # fmt: skip
    assert preview["id"] is None and {u["old"] for u in preview["summary"]["uids"]} == {
        first.SeriesInstanceUID,
        first.SOPInstanceUID,
    }
    op = _qa(server, "move-series", first.SeriesInstanceUID, "--to-study", second.StudyInstanceUID,
             "--reason", "acquired under the wrong order")  # fmt: skip
    new = {u["old"]: u["new"] for u in op["summary"]["uids"]}
    out = run_dcmtk(
        "findscu", "-v", "-S", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port),
        "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={second.StudyInstanceUID}",
        "-k", "SeriesInstanceUID",
    ).stderr  # fmt: skip
    assert "Received Final Find Response (Success)" in out, out
    assert new[first.SeriesInstanceUID] in out and first.SeriesInstanceUID not in out
    folder = tmp_path / "moved"
    folder.mkdir()
    out = run_dcmtk(
        "getscu", "-v", "-S", "-aec", server.ae_title, "-od", str(folder), "127.0.0.1", str(server.dicom_port),
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={second.StudyInstanceUID}",
    ).stderr  # fmt: skip
    assert "Number of Completed Suboperations : 2" in out, out
    moved = next(d for d in map(pydicom.dcmread, folder.iterdir()) if d.SOPInstanceUID != second.SOPInstanceUID)
    assert moved.SOPInstanceUID == new[first.SOPInstanceUID] == moved.file_meta.MediaStorageSOPInstanceUID
    assert moved.StudyInstanceUID == second.StudyInstanceUID
    assert moved.SeriesInstanceUID == new[first.SeriesInstanceUID]
    client = dicomweb(server, accounts_of(server)["viewer"])
    assert {m["00080018"]["Value"][0] for m in client.retrieve_study_metadata(second.StudyInstanceUID)} == {
        second.SOPInstanceUID,
        new[first.SOPInstanceUID],
    }
    assert client.search_for_studies(search_filters={"StudyInstanceUID": first.StudyInstanceUID}) == []
    # the old identity sent again is refused with 0xA771 (rejected, 113038)
    resend = run_dcmtk("storescu", "-d", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port),
                       str(tmp_path / f"{first.SOPInstanceUID}.dcm"))  # fmt: skip
    assert "0xa771" in (resend.stdout + resend.stderr).lower(), resend.stderr

    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        admin = accounts_of(server)["admin"].bearer
        body = {"instances": [second.SOPInstanceUID], "to_new_series": True, "reason": "own series"}
        assert http.post("/api/qa/move-instances", json={**body, "to_series": "1.2"}, headers=admin).status_code == 400
        assert http.post("/api/qa/move-instances", json={**body, "instances": ["x"]}, headers=admin).status_code == 400
        split = http.post("/api/qa/move-instances", json=body, headers=admin)
        assert split.status_code == 200, split.text
        assert http.post("/api/qa/undo", json={"operation": split.json()["id"], "reason": "undo"},
                         headers=admin).status_code == 200  # fmt: skip
    _qa(server, "undo", str(op["id"]), "--reason", "right order after all")
    _get(server, first.StudyInstanceUID, tmp_path / "again")
    assert next((tmp_path / "again").iterdir()).read_bytes() == next((tmp_path / "before").iterdir()).read_bytes()
    assert before.SOPInstanceUID == first.SOPInstanceUID


def test_merged_studies_go_out_by_movescu_under_new_uids_and_undo_sends_the_old_bytes(
    server: ServerProcess, tmp_path: Path, storescp: StoreScp
) -> None:
    patient = f"QW{generate_uid()[-8:]}"
    first = _store(server, tmp_path, patient, "MERGE^STUDIES")
    second = _store(server, tmp_path, patient, "MERGE^STUDIES")
    server.cli("node", "add", f"mv{patient[-6:]}", "--ae-title", "MOVESCU", "--host", "127.0.0.1", "--port", "104",
               check=False)  # fmt: skip
    server.cli("node", "add", f"dest{patient[-6:]}", "--ae-title", storescp.ae_title, "--host", "127.0.0.1",
               "--port", str(storescp.port), check=False)  # fmt: skip

    def move(study: str) -> dict[str, pydicom.Dataset]:
        for path in storescp.files():
            path.unlink()
        out = run_dcmtk(
            "movescu", "-v", "-S", "-aet", "MOVESCU", "-aec", server.ae_title, "-aem", storescp.ae_title,
            "127.0.0.1", str(server.dicom_port), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
        ).stderr  # fmt: skip
        assert "Received Final Move Response (Success)" in out, out
        files = storescp.files()
        return {str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p) for p in files}

    before = move(first.StudyInstanceUID)
    op = _qa(server, "merge-studies", first.StudyInstanceUID, second.StudyInstanceUID, "--reason", "one examination")
    new = {u["old"]: u["new"] for u in op["summary"]["uids"]}
    merged = move(second.StudyInstanceUID)
    assert set(merged) == {second.SOPInstanceUID, new[first.SOPInstanceUID]}
    moved = merged[new[first.SOPInstanceUID]]
    assert (moved.StudyInstanceUID, moved.SeriesInstanceUID) == (second.StudyInstanceUID, new[first.SeriesInstanceUID])
    assert "OriginalAttributesSequence" in moved
    _qa(server, "undo", str(op["id"]), "--reason", "two examinations after all")
    after = move(first.StudyInstanceUID)
    assert set(after) == set(before) and after[first.SOPInstanceUID] == before[first.SOPInstanceUID]
    assert "OriginalAttributesSequence" not in after[first.SOPInstanceUID]
