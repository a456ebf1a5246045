"""dciodvfy (Debian dicom3tools) finds no new error in objects coerced by corrections."""

from __future__ import annotations

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
