"""Rebuilding the index from storage replays the corrections journal: the rebuilt archive
answers exactly as the original did (no wrong patient resurrected), on both backends."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from conftest import _pg_available, create_pg_database, drop_pg_database, require
from helpers import TEST_ORIGIN, application, identifier
from openpacs.adapters.storage.memory import MemoryBlobStore
from openpacs.bootstrap import Application
from openpacs.domain.errors import OpenPacsError
from openpacs.domain.matching import Model
from openpacs.domain.records import Actor, ActorType
from openpacs.domain.tags import Level
from openpacs.services.reconcile import PatientRef
from samples import sample_file

ADMIN = Actor(ActorType.USER, "admin", "127.0.0.1")
EXPLICIT_LE = "1.2.840.10008.1.2.1"
ROOT = "1.2.826.0.1.3680043.10.996"


def _ct(study: str, series: str, sop: str, patient: str, name: str) -> bytes:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    del ds.OtherPatientIDsSequence
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    ds.PatientID, ds.PatientName = patient, name
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _view(app: Application) -> dict[str, Any]:
    """What users see: every instance with its patient, study and series, and the bytes sent."""
    keys = {"PatientID": "", "PatientName": "", "StudyInstanceUID": "", "SeriesInstanceUID": "", "SOPInstanceUID": ""}
    rows = []
    for answer in app.query.find(app.query.parse(identifier("IMAGE", keys), Model.STUDY_ROOT), ADMIN):
        rows.append(tuple(str(answer.get(k, {}).get("Value", [""])[0]) for k in ("00100020", "00100010", "0020000D",
                                                                                 "0020000E", "00080018")))  # fmt: skip
    patients = app.query.find(app.query.parse(identifier("PATIENT", {"PatientID": ""}), Model.PATIENT_ROOT), ADMIN)
    sent = {}
    for study in sorted({r[2] for r in rows}):
        for instance in app.retrieve.instances(study):
            # the coercion stamps Original Attributes Sequence with the time of sending: compare the rest
            ds = pydicom.filereader.read_dataset(
                io.BytesIO(bytes(app.outbound.encode(instance, (EXPLICIT_LE,))[1])),
                is_implicit_VR=False,
                is_little_endian=True,
            )
            for item in ds.get("OriginalAttributesSequence", []):
                del item.AttributeModificationDateTime
            sent[instance.sop_instance_uid] = ds
    return {
        "rows": sorted(rows),
        "patients": sorted(a["00100020"]["Value"][0] for a in patients),
        "sent": sent,
    }


@pytest.fixture
def rebuilt_url(tmp_path: Path, database_url: str) -> Iterator[str]:
    """An empty database of the other kind (a rebuild may also move SQLite to PostgreSQL)."""
    if database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}"
        return
    require(_pg_available(), "PostgreSQL on 127.0.0.1:5432")
    db = create_pg_database()
    try:
        yield db.url
    finally:
        drop_pg_database(db)


def test_a_rebuilt_index_replays_the_corrections(tmp_path: Path, database_url: str, rebuilt_url: str) -> None:
    blobs = MemoryBlobStore()
    original = application(tmp_path / "one", database_url, blobs=blobs)
    try:
        store = original.ingest.store
        store(_ct(f"{ROOT}.1", f"{ROOT}.1.1", f"{ROOT}.1.1.1", "P1", "DOE^JOHN"), TEST_ORIGIN)
        store(_ct(f"{ROOT}.2", f"{ROOT}.2.1", f"{ROOT}.2.1.1", "P2", "DOE^J"), TEST_ORIGIN)
        for series in (1, 2):
            for n in (1, 2):
                store(_ct(f"{ROOT}.3", f"{ROOT}.3.{series}", f"{ROOT}.3.{series}.{n}", "P3", "ROE^RITA"), TEST_ORIGIN)
        store(_ct(f"{ROOT}.4", f"{ROOT}.4.1", f"{ROOT}.4.1.1", "P3", "ROE^RITA"), TEST_ORIGIN)
        reconcile = original.reconcile
        reconcile.update_patient(PatientRef("P2"), {"PatientName": "DOE^JANE"}, ADMIN, "name completed")
        reconcile.merge_patients(PatientRef("P1"), PatientRef("P2"), ADMIN, "same woman")
        # arrives after the merge under the old ID: lands on the survivor (and must again)
        store(_ct(f"{ROOT}.5", f"{ROOT}.5.1", f"{ROOT}.5.1.1", "P1", "DOE^JOHN"), TEST_ORIGIN)
        reconcile.move_series(f"{ROOT}.3.1", f"{ROOT}.4", ADMIN, "wrong order")
        rejected = reconcile.reject(Level.SERIES, f"{ROOT}.3.2", "113001", ADMIN, "blurred")
        assert rejected.id is not None
        reconcile.undo(rejected.id, ADMIN, "not blurred after all")
        reconcile.reject(Level.IMAGE, f"{ROOT}.2.1.1", "113037", ADMIN, "wrong patient")
        reconcile.update_study(f"{ROOT}.4", {"StudyDescription": "CT CHEST"}, ADMIN, "description")
        before = _view(original)
        last = reconcile.operations(1)[0]
    finally:
        original.close()
    assert "P1" not in before["patients"] and any(r[0] == "P2" and r[2] == f"{ROOT}.5" for r in before["rows"])

    rebuilt = application(tmp_path / "two", rebuilt_url, blobs=blobs)
    try:
        report = rebuilt.rebuild.rebuild(ADMIN)
        assert report.operations == 7 and report.not_indexed == [] and report.notes == 3
        after = _view(rebuilt)
        assert after["rows"] == before["rows"] and after["patients"] == before["patients"]
        assert after["sent"] == before["sent"]
        # the history came back with the same operation numbers: the last one can be undone
        assert last.id is not None and rebuilt.reconcile.operation(last.id).kind == last.kind
        rebuilt.reconcile.undo(last.id, ADMIN, "undo after the rebuild")
        new = rebuilt.reconcile.operations(1)[0]
        assert new.id == last.id + 1
        with pytest.raises(OpenPacsError):
            rebuilt.rebuild.rebuild(ADMIN)  # only into an empty index
    finally:
        rebuilt.close()
