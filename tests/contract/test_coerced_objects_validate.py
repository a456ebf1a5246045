"""dciodvfy (Debian dicom3tools) finds no new error in objects coerced by corrections, nor any
error in the reports stored as DICOM."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from conftest import require
from helpers import TEST_ORIGIN, application
from openpacs.bootstrap import Application
from openpacs.domain.part10 import encode_file_meta
from openpacs.domain.records import Actor, ActorType
from openpacs.domain.tags import Level
from openpacs.services.reconcile import PatientRef
from openpacs.services.report_documents import ReportDocuments
from samples import sample_file

ADMIN = Actor(ActorType.USER, "admin", "127.0.0.1")
EXPLICIT_LE = "1.2.840.10008.1.2.1"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    require(shutil.which("dciodvfy") is not None, "dciodvfy (Debian dicom3tools; scripts/setup.sh test installs it)")
    application_ = application(tmp_path, f"sqlite:///{tmp_path / 'index.sqlite3'}")
    try:
        yield application_
    finally:
        application_.close()


def _errors(path: Path) -> set[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False)
    return {line.strip() for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")}


@pytest.mark.parametrize("sample", ["CT_small.dcm", "MR_small.dcm"])
def test_a_coerced_object_has_no_new_error(app: Application, tmp_path: Path, sample: str) -> None:
    stored_path = sample_file(sample)
    stored = pydicom.dcmread(stored_path, stop_before_pixels=True)
    app.ingest.store(stored_path.read_bytes(), TEST_ORIGIN)
    app.reconcile.update_patient(
        PatientRef(str(stored.PatientID)),
        {"PatientName": "CORRECTED^NAME^MIDDLE", "PatientBirthDate": "19700101"},
        ADMIN,
        "registration fixed",
    )
    app.reconcile.update_study(
        str(stored.StudyInstanceUID), {"StudyDescription": "CORRECTED DESCRIPTION"}, ADMIN, "order fixed"
    )
    (instance,) = app.retrieve.instances(str(stored.StudyInstanceUID))
    syntax, data = app.outbound.encode(instance, (EXPLICIT_LE,))
    coerced_path = tmp_path / "coerced.dcm"
    coerced_path.write_bytes(encode_file_meta(syntax, instance.sop_class_uid, instance.sop_instance_uid, "") + data)
    coerced = pydicom.dcmread(coerced_path, stop_before_pixels=True)
    assert coerced.PatientName == "CORRECTED^NAME^MIDDLE" and "OriginalAttributesSequence" in coerced
    new_errors = _errors(coerced_path) - _errors(stored_path)
    assert not new_errors, new_errors
    # and the rejection note of a rejection is valid too
    app.reconcile.reject(Level.STUDY, str(stored.StudyInstanceUID), "113001", ADMIN, "quality")
    with app.index.session() as session:
        (note,) = [
            s
            for s in session.instance_states(Level.STUDY, str(stored.StudyInstanceUID))
            if s.hidden == "rejection-note"
        ]
        (stored_note,) = session.stored_instances(Level.IMAGE, [note.sop_instance_uid], hidden=True)
    note_path = tmp_path / "note.dcm"
    note_path.write_bytes(app.outbound.read(stored_note))
    assert not _errors(note_path), _errors(note_path)


def test_a_reallocated_object_and_a_rewritten_reference_have_no_new_error(app: Application, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from openpacs.domain.qa import RejectionCode
    from openpacs.services.iocm import rejection_note

    stored_path = sample_file("CT_small.dcm")
    stored = pydicom.dcmread(stored_path, stop_before_pixels=True)
    app.ingest.store(stored_path.read_bytes(), TEST_ORIGIN)
    other = pydicom.dcmread(sample_file("CT_small.dcm"))
    other.StudyInstanceUID = other.SeriesInstanceUID = other.SOPInstanceUID = None
    other.StudyInstanceUID, other.SeriesInstanceUID = f"{stored.StudyInstanceUID}.9", f"{stored.SeriesInstanceUID}.9"
    other.SOPInstanceUID = f"{stored.SOPInstanceUID}.9"
    other.file_meta.MediaStorageSOPInstanceUID = other.SOPInstanceUID
    other_path = tmp_path / "other.dcm"
    other.save_as(other_path, enforce_file_format=True)
    app.ingest.store(other_path.read_bytes(), TEST_ORIGIN)
    # a Key Object Selection in the first study referencing its image
    with app.index.session() as session:
        referenced = session.stored_instances(Level.IMAGE, [str(stored.SOPInstanceUID)])
    kos_uid, kos = rejection_note(referenced, RejectionCode("113000", "Of Interest", ""), datetime.now(UTC))
    kos_path = tmp_path / "kos.dcm"
    kos_path.write_bytes(kos)
    app.ingest.store(kos, TEST_ORIGIN)

    op = app.reconcile.move_series(str(stored.SeriesInstanceUID), str(other.StudyInstanceUID), ADMIN, "wrong study")
    new = {u["old"]: u["new"] for u in op.summary["uids"]}
    moved = next(i for i in app.retrieve.instances(str(other.StudyInstanceUID)) if i.sop_instance_uid in new.values())
    kos_instance = next(
        i for i in app.retrieve.instances(str(stored.StudyInstanceUID)) if i.sop_instance_uid == kos_uid
    )
    for instance, original_path in ((moved, stored_path), (kos_instance, kos_path)):
        syntax, data = app.outbound.encode(instance, (EXPLICIT_LE,))
        path = tmp_path / f"{instance.sop_instance_uid}.dcm"
        path.write_bytes(encode_file_meta(syntax, instance.sop_class_uid, instance.sop_instance_uid, "") + data)
        coerced = pydicom.dcmread(path, stop_before_pixels=True)
        assert "OriginalAttributesSequence" in coerced
        new_errors = _errors(path) - _errors(original_path)
        assert not new_errors, (instance.sop_instance_uid, new_errors)
    assert pydicom.dcmread(tmp_path / f"{moved.sop_instance_uid}.dcm").SOPInstanceUID == new[str(stored.SOPInstanceUID)]


@pytest.mark.parametrize("kind", ["text", "pdf", "cda"])
def test_reports_stored_as_dicom_are_valid_and_in_their_study(app: Application, tmp_path: Path, kind: str) -> None:
    """ORU reports become Basic Text SR, Encapsulated PDF or CDA objects of the study; dciodvfy
    finds no error in them."""
    stored_path = sample_file("CT_small.dcm")
    stored = pydicom.dcmread(stored_path, stop_before_pixels=True)
    app.ingest.store(stored_path.read_bytes(), TEST_ORIGIN)
    app.hl7_processor.documents = ReportDocuments(app.index, app.ingest, clock=app.hl7._clock)
    values = {
        "text": "OBX|1|TX|IMP^Impression^L||No acute findings.||||||F",
        "pdf": "OBX|1|ED|PDF^Report^L||^Application^PDF^Base64^" + base64.b64encode(b"%PDF-1.4\n%%EOF").decode(),
        "cda": "OBX|1|ED|CDA^Report^L||^Text^XML^Base64^" + base64.b64encode(b"<ClinicalDocument/>").decode(),
    }
    oru = (
        f"MSH|^~\\&|RPT|HOSP|PACS|HOSP|2026||ORU^R01|D-{kind}|P|2.5.1\rPID|||{stored.PatientID}\r"
        f"OBR|1|PL9||X|||20261128|||||||||||ACC9|||||||F|||||||&Reader&Rita\r"
        f"OBX|0|ST|113014^DICOM Study^DCM||{stored.StudyInstanceUID}||||||F\r{values[kind]}\r"
    )
    assert b"MSA|AA" in app.hl7.receive(oru.encode(), "127.0.0.1:1")
    app.hl7_processor.process_pending()
    (report,) = app.orders.reports(accession="ACC9")
    assert report.sop_instance_uid, report
    (document,) = [i for i in app.retrieve.instances(str(stored.StudyInstanceUID)) if i.sop_instance_uid ==
                   report.sop_instance_uid]  # fmt: skip
    syntax, data = app.outbound.encode(document, (EXPLICIT_LE,))
    path = tmp_path / f"{kind}.dcm"
    path.write_bytes(encode_file_meta(syntax, document.sop_class_uid, document.sop_instance_uid, "") + data)
    ds = pydicom.dcmread(path)
    assert ds.PatientID == stored.PatientID and ds.StudyInstanceUID == stored.StudyInstanceUID
    if kind == "text":
        assert ds.Modality == "SR" and ds.VerificationFlag == "VERIFIED"
        assert ds.ContentSequence[0].TextValue == "Impression:\nNo acute findings."
    else:
        assert ds.Modality == "DOC" and ds.EncapsulatedDocument.startswith(b"%PDF" if kind == "pdf" else b"<Clin")
    assert _errors(path) == set()
