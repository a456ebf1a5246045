"""Corrections on both index backends: what every outbound path shows, dry runs, undo."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
import sqlalchemy as sa

from helpers import TEST_ORIGIN, application, identifier
from openpacs.bootstrap import Application
from openpacs.domain.errors import Conflict, InvalidQuery, NotFound
from openpacs.domain.matching import Model
from openpacs.domain.qa import StateChanged
from openpacs.domain.records import Actor, ActorType
from openpacs.services.outbound import dataset_offset
from openpacs.services.reconcile import PatientRef
from samples import sample_file

ADMIN = Actor(ActorType.USER, "admin", "127.0.0.1")
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _ct(**changes: Any) -> bytes:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    del ds.OtherPatientIDsSequence
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _study(n: int, patient: str, name: str) -> bytes:
    return _ct(
        StudyInstanceUID=f"1.2.826.0.1.3680043.10.999.{n}",
        SeriesInstanceUID=f"1.2.826.0.1.3680043.10.999.{n}.1",
        SOPInstanceUID=f"1.2.826.0.1.3680043.10.999.{n}.1.1",
        PatientID=patient,
        PatientName=name,
    )


def _studies_of(app: Application, patient_id: str) -> dict[str, str]:
    """Study Instance UID -> Patient's Name, as a C-FIND at study level answers."""
    query = app.query.parse(
        identifier("STUDY", {"PatientID": patient_id, "PatientName": "", "StudyInstanceUID": ""}), Model.STUDY_ROOT
    )
    return {a["0020000D"]["Value"][0]: a["00100010"]["Value"][0]["Alphabetic"] for a in app.query.find(query, ADMIN)}


def _patients(app: Application) -> set[str]:
    query = app.query.parse(identifier("PATIENT", {"PatientID": ""}), Model.PATIENT_ROOT)
    return {a["00100020"]["Value"][0] for a in app.query.find(query, ADMIN)}


def _sent(app: Application, study: str) -> list[bytes]:
    """What C-MOVE would send of a study: each instance's data set."""
    return [app.outbound.encode(i, (EXPLICIT_LE,))[1] for i in app.retrieve.instances(study)]


def _stored(app: Application, study: str) -> list[bytes]:
    out = []
    for instance in app.retrieve.instances(study):
        data = app.outbound.read(instance)
        out.append(data[dataset_offset(data) :])
    return out


def _dump(app: Application) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (the dry-run check)."""
    from openpacs.adapters.index.tables import metadata

    engine = app.index.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        dump = {
            name: sorted(map(repr, connection.execute(sa.select(table)).all()))  # type: ignore[misc]
            for name, table in metadata.tables.items()
            if name != "audit"
        }
        # queries' own audit records are written asynchronously: compare the rest of the audit
        audit = metadata.tables["audit"]
        dump["audit"] = sorted(map(repr, connection.execute(sa.select(audit).where(audit.c.action != "query")).all()))
        return dump


def test_update_patient_shows_everywhere_and_undo_restores_bytes(app: Application) -> None:
    app.ingest.store(_study(1, "PID1", "WRONG^NAME"), TEST_ORIGIN)
    study = "1.2.826.0.1.3680043.10.999.1"
    original = _sent(app, study)
    assert original == _stored(app, study)  # untouched: byte-exact

    op = app.reconcile.update_patient(
        PatientRef("PID1"), {"PatientName": "RIGHT^NAME", "PatientSex": "F"}, ADMIN, "name typed wrong at the desk"
    )
    assert op.id is not None and op.summary["affected"] == {"studies": 1, "series": 1, "instances": 1}
    assert {c["attribute"]: (c["old"], c["new"]) for c in op.summary["changes"]} == {
        "PatientName": ("WRONG^NAME", "RIGHT^NAME"),
        "PatientSex": ("O", "F"),  # CT_small.dcm says O
    }
    assert _studies_of(app, "PID1") == {study: "RIGHT^NAME"}
    (sent,) = _sent(app, study)
    ds = pydicom.filereader.read_dataset(io.BytesIO(sent), is_implicit_VR=False, is_little_endian=True)
    assert ds.PatientName == "RIGHT^NAME" and ds.PatientSex == "F"
    (original_attributes,) = ds.OriginalAttributesSequence
    assert original_attributes.ModifiedAttributesSequence[0].PatientName == "WRONG^NAME"
    assert app.reconcile.operation(op.id).reason == "name typed wrong at the desk"

    undo = app.reconcile.undo(op.id, ADMIN, "the old name was right after all")
    assert undo.undo_of == op.id and app.reconcile.operation(op.id).undone_by == undo.id
    assert _studies_of(app, "PID1") == {study: "WRONG^NAME"}
    assert _sent(app, study) == original  # byte-exact again
    with pytest.raises(Conflict):
        app.reconcile.undo(op.id, ADMIN, "twice")


def test_a_dry_run_changes_nothing(app: Application) -> None:
    app.ingest.store(_study(1, "PID1", "DOE^JOHN"), TEST_ORIGIN)
    app.ingest.store(_study(2, "PID2", "DOE^JOHN"), TEST_ORIGIN)
    before = _dump(app)
    preview = app.reconcile.merge_patients(PatientRef("PID1"), PatientRef("PID2"), ADMIN, "same man", dry_run=True)
    assert preview.id is None and len(preview.edits) == 2
    update = app.reconcile.update_patient(PatientRef("PID1"), {"PatientID": "PID9"}, ADMIN, "x", dry_run=True)
    assert any(c.get("identifier") for c in update.summary["changes"])
    app.reconcile.move_study("1.2.826.0.1.3680043.10.999.1", PatientRef("PID2"), ADMIN, "x", dry_run=True)
    assert _dump(app) == before


def test_merge_makes_a_tombstone_that_later_objects_follow(app: Application) -> None:
    app.ingest.store(_study(1, "OLD", "DOE^JOHN"), TEST_ORIGIN)
    app.ingest.store(_study(2, "NEW", "DOE^JOHN"), TEST_ORIGIN)
    op = app.reconcile.merge_patients(PatientRef("OLD"), PatientRef("NEW"), ADMIN, "duplicate registration")
    assert _patients(app) == {"NEW"}
    assert set(_studies_of(app, "NEW")) == {"1.2.826.0.1.3680043.10.999.1", "1.2.826.0.1.3680043.10.999.2"}
    # the first study now goes out under the surviving patient's ID
    (sent,) = _sent(app, "1.2.826.0.1.3680043.10.999.1")
    ds = pydicom.filereader.read_dataset(io.BytesIO(sent), is_implicit_VR=False, is_little_endian=True)
    assert ds.PatientID == "NEW"
    # a new study with the old ID lands on the survivor
    app.ingest.store(_study(3, "OLD", "DOE^JOHN"), TEST_ORIGIN)
    assert "1.2.826.0.1.3680043.10.999.3" in _studies_of(app, "NEW")
    with pytest.raises(NotFound):
        app.reconcile.update_patient(PatientRef("OLD"), {"PatientSex": "F"}, ADMIN, "tombstones are not edited")
    # unmerge: the studies it moved go back; the later one stays where it landed
    unmerge = app.reconcile.unmerge(PatientRef("OLD"), ADMIN, "they were two people")
    assert unmerge.undo_of == op.id
    assert _patients(app) == {"OLD", "NEW"}
    assert set(_studies_of(app, "OLD")) == {"1.2.826.0.1.3680043.10.999.1"}


def test_move_study_keeps_uids_and_counts(app: Application) -> None:
    app.ingest.store(_study(1, "A", "ALPHA^ANN"), TEST_ORIGIN)
    app.ingest.store(_study(2, "B", "BETA^BOB"), TEST_ORIGIN)
    study = "1.2.826.0.1.3680043.10.999.1"
    app.reconcile.move_study(study, PatientRef("B"), ADMIN, "sent under the wrong patient")
    assert _studies_of(app, "B") == {study: "BETA^BOB", "1.2.826.0.1.3680043.10.999.2": "BETA^BOB"}
    assert _studies_of(app, "A") == {}
    with app.index.session() as session:
        counts = {
            p: session.counts_of(level, pk)  # type: ignore[attr-defined]
            for p, level, pk in [("A", "PATIENT", 1), ("B", "PATIENT", 2)]
        }
    assert counts == {
        "A": {"studies": 0, "series": 0, "instances": 0},
        "B": {"studies": 2, "series": 2, "instances": 2},
    }
    (instance,) = app.retrieve.instances(study)
    assert instance.sop_instance_uid == "1.2.826.0.1.3680043.10.999.1.1.1"


def test_patient_id_change_moves_the_identifier(app: Application) -> None:
    app.ingest.store(_study(1, "TEMP123", "DOE^JANE"), TEST_ORIGIN)
    app.ingest.store(_study(2, "MRN777", "ROE^RICH"), TEST_ORIGIN)
    with pytest.raises(Conflict, match="another patient"):
        app.reconcile.update_patient(PatientRef("TEMP123"), {"PatientID": "MRN777"}, ADMIN, "x")
    app.reconcile.update_patient(PatientRef("TEMP123"), {"PatientID": "MRN555"}, ADMIN, "registered under a temp ID")
    assert _patients(app) == {"MRN555", "MRN777"}
    # a later object under the new ID lands on the same patient (no new patient)
    app.ingest.store(_study(3, "MRN555", "DOE^JANE"), TEST_ORIGIN)
    assert app.archive.stats().patients == 2
    assert set(_studies_of(app, "MRN555")) == {"1.2.826.0.1.3680043.10.999.1", "1.2.826.0.1.3680043.10.999.3"}


def test_undo_is_refused_while_later_operations_hold_the_objects(app: Application) -> None:
    app.ingest.store(_study(1, "PID1", "DOE^JOHN"), TEST_ORIGIN)
    first = app.reconcile.update_patient(PatientRef("PID1"), {"PatientName": "DOE^JON"}, ADMIN, "typo")
    second = app.reconcile.update_patient(PatientRef("PID1"), {"PatientName": "DOE^JOHNNY"}, ADMIN, "nickname")
    assert first.id is not None and second.id is not None
    with pytest.raises(StateChanged) as refused:
        app.reconcile.undo(first.id, ADMIN, "back")
    assert refused.value.operations == [second.id]
    app.reconcile.undo(second.id, ADMIN, "back")
    app.reconcile.undo(first.id, ADMIN, "back")
    assert _studies_of(app, "PID1") == {"1.2.826.0.1.3680043.10.999.1": "DOE^JOHN"}


def test_bad_requests_change_nothing(app: Application) -> None:
    app.ingest.store(_study(1, "PID1", "DOE^JOHN"), TEST_ORIGIN)
    before = _dump(app)
    study = "1.2.826.0.1.3680043.10.999.1"
    with pytest.raises(InvalidQuery, match="cannot be changed"):
        app.reconcile.update_patient(PatientRef("PID1"), {"StudyDescription": "x"}, ADMIN, "x")
    with pytest.raises(InvalidQuery, match="PatientBirthDate"):
        app.reconcile.update_patient(PatientRef("PID1"), {"PatientBirthDate": "19991399"}, ADMIN, "x")
    with pytest.raises(InvalidQuery, match="reason"):
        app.reconcile.update_study(study, {"StudyDescription": "HEAD"}, ADMIN, "  ")
    with pytest.raises(InvalidQuery, match="nothing to change"):
        app.reconcile.update_patient(PatientRef("PID1"), {"PatientName": "DOE^JOHN"}, ADMIN, "x")
    with pytest.raises(NotFound):
        app.reconcile.update_patient(PatientRef("NOBODY"), {"PatientName": "X"}, ADMIN, "x")
    with pytest.raises(NotFound):
        app.reconcile.update_series("1.2.3.4", {"SeriesDescription": "X"}, ADMIN, "x")
    with pytest.raises(InvalidQuery, match="same patient"):
        app.reconcile.merge_patients(PatientRef("PID1"), PatientRef("PID1"), ADMIN, "x")
    with pytest.raises(NotFound):
        app.reconcile.undo(999, ADMIN, "x")
    assert _dump(app) == before


def test_study_and_series_updates_reach_the_answers(app: Application) -> None:
    app.ingest.store(_study(1, "PID1", "DOE^JOHN"), TEST_ORIGIN)
    study, series = "1.2.826.0.1.3680043.10.999.1", "1.2.826.0.1.3680043.10.999.1.1"
    app.reconcile.update_study(study, {"StudyDescription": "CT HEAD", "AccessionNumber": "ACC42"}, ADMIN, "order")
    app.reconcile.update_series(series, {"BodyPartExamined": "HEAD"}, ADMIN, "wrong body part")
    query = app.query.parse(identifier("STUDY", {"AccessionNumber": "ACC42", "StudyDescription": ""}), Model.STUDY_ROOT)
    (answer,) = app.query.find(query, ADMIN)
    assert answer["00081030"]["Value"] == ["CT HEAD"]
    (sent,) = _sent(app, study)
    ds = pydicom.filereader.read_dataset(io.BytesIO(sent), is_implicit_VR=False, is_little_endian=True)
    assert (ds.StudyDescription, ds.AccessionNumber, ds.BodyPartExamined) == ("CT HEAD", "ACC42", "HEAD")


def test_each_operation_is_journaled_audited_and_on_the_change_feed(app: Application) -> None:
    app.ingest.store(_study(1, "PID1", "DOE^JOHN"), TEST_ORIGIN)
    seq = app.archive.changes_since(0, 1000)[-1].seq
    op = app.reconcile.update_patient(PatientRef("PID1"), {"PatientName": "DOE^JON"}, ADMIN, "typo")
    with app.index.session() as session:
        changes = session.changes_since(seq, 100)
        audit = session.audit_entries(0, 1000)
    assert [c.change_type for c in changes][-1:] == ["patient_updated"]
    entry = next(a for a in audit if a["action"] == "qa-update-patient")
    assert entry["actor_id"] == "admin" and entry["details"]["reason"] == "typo"
    journal = app.blobs.read(f"journal/{op.created_at:%Y/%m/%d}/{op.id:012d}.json")  # type: ignore[union-attr]
    assert b'"kind":"update-patient"' in journal and b"DOE^JON" in journal


def test_the_inbox_lists_conflicts_that_corrections_resolve_and_undo_reopens(app: Application) -> None:
    app.ingest.store(_study(1, "PID1", "DOE^JOHN"), TEST_ORIGIN)
    app.ingest.store(_study(2, "PID1", "DOE^JOAN"), TEST_ORIGIN)  # same ID, another name: flagged
    (entry,) = app.reconcile.inbox()
    assert entry["kind"] == "demographics" and entry["patient"]["patient_id"] == "PID1"
    assert entry["details"]["index_vs_object"]["PatientName"] == ["DOE^JOHN", "DOE^JOAN"]
    before = _dump(app)
    preview = app.reconcile.update_patient(
        PatientRef("PID1"), {"PatientName": "DOE^JOAN"}, ADMIN, "x", dry_run=True, resolves=[entry["id"]]
    )
    assert {"object": f"CONFLICT:{entry['id']}", "conflict": {"old": "open", "new": "resolved"}} in preview.summary[
        "changes"
    ]
    assert _dump(app) == before
    with pytest.raises(NotFound):
        app.reconcile.dismiss_conflicts([999], ADMIN, "x")
    op = app.reconcile.update_patient(
        PatientRef("PID1"), {"PatientName": "DOE^JOAN"}, ADMIN, "the desk had it wrong", resolves=[entry["id"]]
    )
    assert app.reconcile.inbox() == []
    assert op.params["resolves"] == [entry["id"]]
    with pytest.raises(Conflict, match="already resolved"):
        app.reconcile.dismiss_conflicts([entry["id"]], ADMIN, "x")
    assert op.id is not None
    app.reconcile.undo(op.id, ADMIN, "wrong call")
    assert [e["id"] for e in app.reconcile.inbox()] == [entry["id"]]
    dismissed = app.reconcile.dismiss_conflicts([entry["id"]], ADMIN, "a nickname, same woman")
    assert dismissed.kind == "dismiss-conflict" and app.reconcile.inbox() == []


def _two_series_study(app: Application) -> tuple[str, list[str]]:
    """A study of 2 series x 2 instances; its UID and its series' UIDs."""
    study = "1.2.826.0.1.3680043.10.998"
    series = [f"{study}.{s}" for s in (1, 2)]
    for s in series:
        for n in (1, 2):
            app.ingest.store(
                _ct(StudyInstanceUID=study, SeriesInstanceUID=s, SOPInstanceUID=f"{s}.{n}", PatientID="REJ1"),
                TEST_ORIGIN,
            )
    return study, series


def _counts(app: Application, study: str) -> tuple[int, int] | None:
    query = app.query.parse(
        identifier(
            "STUDY",
            {"StudyInstanceUID": study, "NumberOfStudyRelatedSeries": "", "NumberOfStudyRelatedInstances": ""},
        ),
        Model.STUDY_ROOT,
    )
    answers = list(app.query.find(query, ADMIN))
    if not answers:
        return None
    (a,) = answers
    return a["00201206"]["Value"][0], a["00201208"]["Value"][0]


def test_reject_hides_everywhere_stores_a_note_and_undo_shows_again(app: Application) -> None:
    from openpacs.domain.tags import Level

    study, series = _two_series_study(app)
    assert _counts(app, study) == (2, 4)
    before = _dump(app)
    preview = app.reconcile.reject(Level.SERIES, series[0], "113001", ADMIN, "blurred", dry_run=True)
    assert preview.summary["affected"] == {"studies": 1, "series": 1, "instances": 2}
    assert _dump(app) == before

    op = app.reconcile.reject(Level.SERIES, series[0], "113001", ADMIN, "motion blur")
    assert _counts(app, study) == (1, 2)
    assert {i.series_instance_uid for i in app.retrieve.instances(study)} == {series[1]}
    with pytest.raises(NotFound):
        app.retrieve.instances(study, series[0])
    # the rejection note: a KOS of the study, titled 113001, referencing both instances, hidden from users
    with app.index.session() as session:
        states = session.instance_states(Level.STUDY, study)
        (note,) = [s for s in states if s.hidden == "rejection-note"]
        (stored,) = session.stored_instances(Level.IMAGE, [note.sop_instance_uid], hidden=True)
    kos = pydicom.dcmread(io.BytesIO(app.outbound.read(stored)))
    assert kos.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59" and kos.Modality == "KO"
    assert kos.ConceptNameCodeSequence[0].CodeValue == "113001"
    (evidence,) = kos.CurrentRequestedProcedureEvidenceSequence
    (referenced,) = evidence.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == series[0]
    assert sorted(r.ReferencedSOPInstanceUID for r in referenced.ReferencedSOPSequence) == [
        f"{series[0]}.1",
        f"{series[0]}.2",
    ]
    assert len(kos.ContentSequence) == 2 and kos.PatientID == "REJ1"
    assert op.summary["rejection_note"] == note.sop_instance_uid

    assert op.id is not None
    app.reconcile.undo(op.id, ADMIN, "rejected the wrong series")
    assert _counts(app, study) == (2, 4)
    assert len(app.retrieve.instances(study)) == 4


def test_soft_delete_and_restore_of_a_study(app: Application) -> None:
    from openpacs.domain.tags import Level

    study, _ = _two_series_study(app)
    app.reconcile.delete(Level.STUDY, study, ADMIN, "test study sent to production")
    assert _counts(app, study) is None
    assert "REJ1" not in _patients(app)  # a patient with nothing visible is not shown
    with pytest.raises(NotFound):
        app.retrieve.instances(study)
    with pytest.raises(NotFound):
        app.reconcile.delete(Level.STUDY, study, ADMIN, "twice")
    restored = app.reconcile.restore(Level.STUDY, study, ADMIN, "it was a real patient")
    assert restored.summary["affected"]["instances"] == 4
    assert _counts(app, study) == (2, 4) and "REJ1" in _patients(app)
    with pytest.raises(InvalidQuery, match="nothing"):
        app.reconcile.restore(Level.STUDY, study, ADMIN, "again")


def test_rejection_needs_a_known_code_and_something_visible(app: Application) -> None:
    from openpacs.domain.tags import Level

    study, series = _two_series_study(app)
    before = _dump(app)
    with pytest.raises(InvalidQuery, match="CID 7011"):
        app.reconcile.reject(Level.STUDY, study, "999999", ADMIN, "x")
    with pytest.raises(InvalidQuery, match="reason"):
        app.reconcile.reject(Level.STUDY, study, "113037", ADMIN, " ")
    with pytest.raises(NotFound):
        app.reconcile.reject(Level.SERIES, "1.2.3", "113037", ADMIN, "x")
    assert _dump(app) == before
    app.reconcile.reject(Level.IMAGE, f"{series[1]}.2", "113037", ADMIN, "wrong side marker")
    assert _counts(app, study) == (2, 3)


@pytest.mark.parametrize("policy", ["refuse", "ignore", "restore"])
def test_a_rejected_instance_sent_again_follows_the_policy(tmp_path: Path, database_url: str, policy: str) -> None:
    from openpacs.domain.errors import RejectedInstance
    from openpacs.domain.tags import Level

    app = application(tmp_path, database_url, dicom={"rejected_resend": policy})
    try:
        data = _study(1, "PID1", "DOE^JOHN")
        app.ingest.store(data, TEST_ORIGIN)
        uid = "1.2.826.0.1.3680043.10.999.1.1.1"
        app.reconcile.reject(Level.IMAGE, uid, "113001", ADMIN, "blurred")
        if policy == "refuse":
            with pytest.raises(RejectedInstance) as refused:
                app.ingest.store(data, TEST_ORIGIN)
            assert refused.value.dimse_status == 0xA771
        else:
            app.ingest.store(data, TEST_ORIGIN)
        study = "1.2.826.0.1.3680043.10.999.1"
        if policy == "restore":
            assert [i.sop_instance_uid for i in app.retrieve.instances(study)] == [uid]
        else:
            with pytest.raises(NotFound):
                app.retrieve.instances(study)
    finally:
        app.close()


def test_a_rejection_note_received_from_a_peer_is_applied_on_arrival(app: Application) -> None:
    from openpacs.domain.qa import REJECTION_CODES
    from openpacs.domain.tags import Level
    from openpacs.services.iocm import rejection_note

    study, series = _two_series_study(app)
    rejected = app.retrieve.instances(study, series[0])
    note_uid, note = rejection_note(rejected, REJECTION_CODES["113038"], datetime.now(UTC))
    app.ingest.store(note, TEST_ORIGIN)  # as a modality or a peer archive sends it
    assert _counts(app, study) == (1, 2)
    with app.index.session() as session:
        states = {s.sop_instance_uid: s.hidden for s in session.instance_states(Level.STUDY, study)}
    assert states[note_uid] == "rejection-note"
    assert {states[f"{series[0]}.1"], states[f"{series[0]}.2"]} == {"113038"}
    (op,) = [o for o in app.reconcile.operations() if o.source == "dicom"]
    assert op.kind == "reject" and note_uid in op.reason
    assert op.id is not None
    app.reconcile.undo(op.id, ADMIN, "the peer was wrong")
    assert _counts(app, study) == (2, 4)
    # a note about instances we do not hold is kept (hidden) and changes nothing else
    strangers = [
        dataclasses.replace(i, sop_instance_uid=f"1.2.826.0.1.3680043.10.997.{n}") for n, i in enumerate(rejected)
    ]
    other_uid, other = rejection_note(strangers, REJECTION_CODES["113001"], datetime.now(UTC))
    app.ingest.store(other, TEST_ORIGIN)
    assert _counts(app, study) == (2, 4)
    with app.index.session() as session:
        (state,) = session.instance_states(Level.IMAGE, other_uid)
    assert state.hidden == "rejection-note"


def test_purge_removes_what_was_hidden_long_enough_and_is_final(tmp_path: Path, database_url: str) -> None:
    from openpacs.domain.tags import Level

    app = application(tmp_path, database_url, qa={"purge_after_days": 0})
    try:
        study, series = _two_series_study(app)
        deleted = app.reconcile.delete(Level.SERIES, series[0], ADMIN, "test images")
        preview = app.reconcile.purge(ADMIN, "monthly", dry_run=True)
        assert preview.summary["affected"]["instances"] == 2 and preview.id is None
        assert len(app.reconcile.hidden(Level.STUDY, study)) == 2
        done = app.reconcile.purge(ADMIN, "monthly")
        assert done.summary["affected"] == {"studies": 1, "series": 1, "instances": 2}
        assert app.reconcile.hidden(Level.STUDY, study) == []
        assert _counts(app, study) == (1, 2)
        assert done.id is not None and deleted.id is not None
        with pytest.raises(Conflict, match="purge"):
            app.reconcile.undo(done.id, ADMIN, "oops")
        with pytest.raises(StateChanged, match="no longer exists"):
            app.reconcile.undo(deleted.id, ADMIN, "too late")
    finally:
        app.close()


def test_purge_keeps_what_is_still_restorable(app: Application) -> None:
    from openpacs.domain.tags import Level

    study, series = _two_series_study(app)
    app.reconcile.delete(Level.SERIES, series[0], ADMIN, "test images")
    app.reconcile.reject(Level.IMAGE, f"{series[1]}.1", "113039", ADMIN, "retention expired")
    done = app.reconcile.purge(ADMIN, "monthly")  # 30 days by default: only the 113039 one goes
    assert [p["sop_instance_uid"] for p in done.summary["purged"]] == [f"{series[1]}.1"]
    assert {h["hidden"] for h in app.reconcile.hidden(Level.STUDY, study)} == {"deleted", "rejection-note"}


def test_the_resend_policy_can_differ_per_code(tmp_path: Path, database_url: str) -> None:
    from openpacs.domain.errors import RejectedInstance
    from openpacs.domain.tags import Level

    app = application(tmp_path, database_url, dicom={"rejected_resend_by_code": {"113001": "restore"}})
    try:
        first, second = _study(1, "PID1", "DOE^JOHN"), _study(2, "PID1", "DOE^JOHN")
        app.ingest.store(first, TEST_ORIGIN)
        app.ingest.store(second, TEST_ORIGIN)
        app.reconcile.reject(Level.STUDY, "1.2.826.0.1.3680043.10.999.1", "113001", ADMIN, "blurred")
        app.reconcile.reject(Level.STUDY, "1.2.826.0.1.3680043.10.999.2", "113037", ADMIN, "wrong patient")
        app.ingest.store(first, TEST_ORIGIN)  # quality: taken back
        assert len(app.retrieve.instances("1.2.826.0.1.3680043.10.999.1")) == 1
        with pytest.raises(RejectedInstance):
            app.ingest.store(second, TEST_ORIGIN)  # safety: refused (the default)
    finally:
        app.close()


def test_the_latest_adt_wins_over_earlier_local_edits_which_are_marked(app: Application) -> None:
    from openpacs.ports.index import AuditRecord

    his = Actor(ActorType.HL7, "HIS^HOSPITAL")
    study = "1.2.826.0.1.3680043.10.999.1"
    app.ingest.store(_study(1, "PID1", "DOE^JOHN"), TEST_ORIGIN)
    local = app.reconcile.update_patient(
        PatientRef("PID1"), {"PatientName": "DOE^JOHNNY", "PatientSex": "M"}, ADMIN, "the desk's spelling"
    )
    found = app.reconcile.provenance(PatientRef("PID1"))["attributes"]
    assert (found["PatientName"]["source"], found["PatientName"]["operation"]) == ("local", local.id)
    assert found["PatientBirthDate"] == {"source": "object"}

    adt = app.reconcile.update_patient(
        PatientRef("PID1"), {"PatientName": "DOE^JOHN^A"}, his, "ADT^A08 MSG00042", provenance="hl7"
    )
    assert _studies_of(app, "PID1") == {study: "DOE^JOHN^A"}  # the HIS wins
    found = app.reconcile.provenance(PatientRef("PID1"))["attributes"]
    assert (found["PatientName"]["source"], found["PatientName"]["operation"]) == ("hl7", adt.id)
    assert found["PatientSex"]["source"] == "local"  # the ADT did not carry it
    with app.index.session() as session:
        sources = {
            e["details"]["operation"]: e["details"]["source"]
            for e in session.audit_entries(0, 1000)
            if e["action"] == "qa-update-patient"
        }
    assert sources == {local.id: "local", adt.id: "hl7"}
    # a local undo cannot take back what the later ADT set; the ADT is undone only with the override
    assert local.id is not None and adt.id is not None
    with pytest.raises(StateChanged) as held:
        app.reconcile.undo(local.id, ADMIN, "x")
    assert held.value.operations == [adt.id]
    with pytest.raises(Conflict):
        app.reconcile.undo(adt.id, ADMIN, "x")
    # an undo reports what left the archive since the operation (it recalls nothing)
    with app.index.session(write=True) as session:
        session.add_audit(
            [
                AuditRecord(
                    datetime.now(UTC),
                    Actor(ActorType.DICOM, "WS1@10.0.0.9"),
                    "move",
                    "success",
                    [{"level": "STUDY", "uid": study}],
                    {"destination": "WS1", "completed": 1},
                )
            ]
        )
    undone = app.reconcile.undo(adt.id, ADMIN, "the HIS sent the wrong name", override=True)
    (sent,) = undone.summary["left_the_archive"]["retrievals"]
    assert (sent["action"], sent["destination"]) == ("move", "WS1")
    assert _studies_of(app, "PID1") == {study: "DOE^JOHNNY"}
    assert app.reconcile.provenance(PatientRef("PID1"))["attributes"]["PatientName"]["source"] == "local"
    with pytest.raises(InvalidQuery):
        app.reconcile.update_patient(PatientRef("PID1"), {"PatientSex": "F"}, ADMIN, "x", provenance="fax")
