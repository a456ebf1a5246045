"""Reallocations under new UIDs on both index backends: move-series, merge-studies,
split-study, move-instances; references rewritten, old identities rejected, undo exact."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pydicom
import pytest
import sqlalchemy as sa

from helpers import TEST_ORIGIN, identifier
from openpacs.bootstrap import Application
from openpacs.domain.errors import InvalidQuery, NotFound, RejectedInstance
from openpacs.domain.matching import Model
from openpacs.domain.qa import RejectionCode, StateChanged
from openpacs.domain.records import Actor, ActorType
from openpacs.domain.tags import Level
from openpacs.services.iocm import rejection_note
from samples import sample_file

ADMIN = Actor(ActorType.USER, "admin", "127.0.0.1")
EXPLICIT_LE = "1.2.840.10008.1.2.1"
A = "1.2.826.0.1.3680043.10.997.1"
B = "1.2.826.0.1.3680043.10.997.2"


def _ct(study: str, series: str, sop: str, patient: str = "RE1", **changes: Any) -> bytes:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    del ds.OtherPatientIDsSequence
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.PatientID = study, series, sop, patient
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _fill(app: Application) -> None:
    """Study A: series A.1 and A.2 of 2 instances each; study B: series B.1 of 1 instance."""
    for series in (f"{A}.1", f"{A}.2"):
        for n in (1, 2):
            app.ingest.store(_ct(A, series, f"{series}.{n}", InstanceNumber=n), TEST_ORIGIN)
    app.ingest.store(_ct(B, f"{B}.1", f"{B}.1.1"), TEST_ORIGIN)


def _find(app: Application, level: str, keys: dict[str, str]) -> list[dict[str, Any]]:
    root = Model.PATIENT_ROOT if level == "PATIENT" else Model.STUDY_ROOT
    return list(app.query.find(app.query.parse(identifier(level, keys), root), ADMIN))


def _shape(app: Application) -> dict[str, dict[str, list[str]]]:
    """Study -> series -> SOP Instance UIDs, as C-FIND at image level answers."""
    out: dict[str, dict[str, list[str]]] = {}
    for answer in _find(app, "IMAGE", {"StudyInstanceUID": "", "SeriesInstanceUID": "", "SOPInstanceUID": ""}):
        study, series, sop = (answer[k]["Value"][0] for k in ("0020000D", "0020000E", "00080018"))
        out.setdefault(study, {}).setdefault(series, []).append(sop)
    return {s: {k: sorted(v) for k, v in series.items()} for s, series in out.items()}


def _sent(app: Application, study: str) -> dict[str, bytes]:
    return {i.sop_instance_uid: bytes(app.outbound.encode(i, (EXPLICIT_LE,))[1]) for i in app.retrieve.instances(study)}


def _dataset(data: bytes) -> pydicom.Dataset:
    return pydicom.filereader.read_dataset(io.BytesIO(data), is_implicit_VR=False, is_little_endian=True)


def _dump(app: Application) -> dict[str, list[str]]:
    from openpacs.adapters.index.tables import metadata

    engine = app.index.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        audit = metadata.tables["audit"]
        return {
            name: sorted(
                map(
                    repr,
                    connection.execute(
                        sa.select(table).where(audit.c.action != "query") if name == "audit" else sa.select(table)
                    ).all(),
                )
            )
            for name, table in metadata.tables.items()
        }


def _notes(app: Application, study: str) -> list[pydicom.Dataset]:
    with app.index.session() as session:
        states = [s for s in session.instance_states(Level.STUDY, study) if s.hidden == "rejection-note"]
        stored = session.stored_instances(Level.IMAGE, [s.sop_instance_uid for s in states], hidden=True)
    return [pydicom.dcmread(io.BytesIO(app.outbound.read(s))) for s in stored]


def test_move_series_renames_rejects_the_old_identities_and_undo_is_exact(app: Application) -> None:
    _fill(app)
    before_shape, before_a, before_b = _shape(app), _sent(app, A), _sent(app, B)
    before = _dump(app)
    preview = app.reconcile.move_series(f"{A}.1", B, ADMIN, "acquired under the wrong order", dry_run=True)
    assert preview.id is None and _dump(app) == before
    assert {u["old"] for u in preview.summary["uids"]} == {f"{A}.1", f"{A}.1.1", f"{A}.1.2"}
    assert preview.summary["rejection_notes"][0]["instances"] == 2

    op = app.reconcile.move_series(f"{A}.1", B, ADMIN, "acquired under the wrong order")
    new = {u["old"]: u["new"] for u in op.summary["uids"]}
    assert set(new) == {f"{A}.1", f"{A}.1.1", f"{A}.1.2"} and not set(new.values()) & set(new)
    assert _shape(app) == {
        A: {f"{A}.2": [f"{A}.2.1", f"{A}.2.2"]},
        B: {f"{B}.1": [f"{B}.1.1"], new[f"{A}.1"]: sorted([new[f"{A}.1.1"], new[f"{A}.1.2"]])},
    }
    # whole objects carry the new identity, and the old one in Original Attributes Sequence
    moved = _dataset(_sent(app, B)[new[f"{A}.1.1"]])
    assert (moved.StudyInstanceUID, moved.SeriesInstanceUID, moved.SOPInstanceUID) == (
        B,
        new[f"{A}.1"],
        new[f"{A}.1.1"],
    )
    modified = [m for item in moved.OriginalAttributesSequence for m in item.ModifiedAttributesSequence]
    assert {m.get("SOPInstanceUID") for m in modified} >= {f"{A}.1.1"}
    assert {m.get("SeriesInstanceUID") for m in modified} >= {f"{A}.1"}
    assert _sent(app, A) == {k: v for k, v in before_a.items() if k.startswith(f"{A}.2")}  # untouched, byte-exact
    with pytest.raises(NotFound):
        app.retrieve.instances(A, f"{A}.1")
    # the old identities are rejected (113038) by a note in their study, for peers
    (note,) = _notes(app, A)
    assert note.ConceptNameCodeSequence[0].CodeValue == "113038"
    (evidence,) = note.CurrentRequestedProcedureEvidenceSequence
    assert evidence.StudyInstanceUID == A
    assert {r.ReferencedSOPInstanceUID for r in evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence} == {
        f"{A}.1.1",
        f"{A}.1.2",
    }
    # the old SOP Instance UID sent again is refused (the default policy)
    with pytest.raises(RejectedInstance) as refused:
        app.ingest.store(_ct(A, f"{A}.1", f"{A}.1.1"), TEST_ORIGIN)
    assert refused.value.dimse_status == 0xA771
    # a new image of the old series arriving later follows the series
    app.ingest.store(_ct(A, f"{A}.1", f"{A}.1.3"), TEST_ORIGIN)
    assert f"{A}.1.3" in _shape(app)[B][new[f"{A}.1"]]
    late = _dataset(_sent(app, B)[f"{A}.1.3"])
    assert (late.StudyInstanceUID, late.SeriesInstanceUID) == (B, new[f"{A}.1"])

    assert op.id is not None
    app.reconcile.undo(op.id, ADMIN, "it was the right order after all")
    shape = _shape(app)
    assert shape[A][f"{A}.1"] == [f"{A}.1.1", f"{A}.1.2", f"{A}.1.3"] and shape[B] == before_shape[B]
    after_a = _sent(app, A)
    assert {k: v for k, v in after_a.items() if k != f"{A}.1.3"} == before_a and _sent(app, B) == before_b


def test_merge_studies_moves_everything_and_later_objects_follow(app: Application) -> None:
    _fill(app)
    before_a, before_b = _sent(app, A), _sent(app, B)
    op = app.reconcile.merge_studies(A, B, ADMIN, "one examination sent as two studies")
    assert A not in _shape(app) and len(_sent(app, B)) == 5
    (answer,) = _find(
        app, "STUDY", {"StudyInstanceUID": B, "NumberOfStudyRelatedSeries": "", "NumberOfStudyRelatedInstances": ""}
    )
    assert (answer["00201206"]["Value"][0], answer["00201208"]["Value"][0]) == (3, 5)
    assert _find(app, "STUDY", {"StudyInstanceUID": A}) == []
    # a new series of the merged study arriving later lands in the target
    app.ingest.store(_ct(A, f"{A}.3", f"{A}.3.1"), TEST_ORIGIN)
    assert f"{A}.3" in _shape(app)[B]
    late = _dataset(_sent(app, B)[f"{A}.3.1"])
    assert late.StudyInstanceUID == B
    # the undo brings back every series it moved and drops the redirection (the late series,
    # another object, stays where it landed)
    assert op.id is not None
    app.reconcile.undo(op.id, ADMIN, "two examinations after all")
    assert _sent(app, A) == before_a
    assert {k: v for k, v in _sent(app, B).items() if k != f"{A}.3.1"} == before_b


def test_split_study_by_series_and_by_instances(app: Application) -> None:
    _fill(app)
    before_a = _sent(app, A)
    with pytest.raises(InvalidQuery):
        app.reconcile.split_study(A, ADMIN, "x", series=[f"{A}.1", f"{A}.2"])  # nothing would be left
    op = app.reconcile.split_study(A, ADMIN, "two procedures in one study", series=[f"{A}.2"])
    new_study = op.params["new_study"]
    shape = _shape(app)
    assert list(shape[A]) == [f"{A}.1"] and len(shape[new_study]) == 1
    (answer,) = _find(app, "STUDY", {"StudyInstanceUID": new_study, "PatientID": ""})
    assert answer["00100020"]["Value"] == ["RE1"]  # the same patient

    by_instances = app.reconcile.split_study(A, ADMIN, "one image belongs elsewhere", instances=[f"{A}.1.2"])
    other = by_instances.params["new_study"]
    (series,) = _shape(app)[other].values()
    assert series == [next(u["new"] for u in by_instances.summary["uids"] if u["old"] == f"{A}.1.2")]
    assert _shape(app)[A] == {f"{A}.1": [f"{A}.1.1"]}

    assert by_instances.id is not None and op.id is not None
    # a later operation on a renamed series (named by its new UID) holds the split back
    renamed = next(u["new"] for u in op.summary["uids"] if u["level"] == "SERIES")
    update = app.reconcile.update_series(renamed, {"SeriesDescription": "SPLIT"}, ADMIN, "label")
    with pytest.raises(StateChanged) as held:
        app.reconcile.undo(op.id, ADMIN, "out of order")
    assert held.value.operations == [update.id]
    assert update.id is not None
    app.reconcile.undo(update.id, ADMIN, "undo")
    app.reconcile.undo(op.id, ADMIN, "undo")  # independent of the split by instances
    app.reconcile.undo(by_instances.id, ADMIN, "undo")
    assert _sent(app, A) == before_a and set(_shape(app)) == {A, B}
    assert _find(app, "STUDY", {"StudyInstanceUID": new_study}) == []


def test_move_instances_to_a_series_and_to_a_new_series(app: Application) -> None:
    _fill(app)
    before = _sent(app, A)
    op = app.reconcile.move_instances([f"{A}.1.1"], ADMIN, "wrong series", to_series=f"{B}.1")
    new = op.summary["uids"][0]["new"]
    assert _shape(app)[B][f"{B}.1"] == sorted([f"{B}.1.1", new])
    moved = _dataset(_sent(app, B)[new])
    assert (moved.StudyInstanceUID, moved.SeriesInstanceUID, moved.SOPInstanceUID) == (B, f"{B}.1", new)
    assert moved.PatientID == "RE1"

    split = app.reconcile.move_instances([f"{A}.2.1", f"{A}.2.2"], ADMIN, "own series", to_new_series=True)
    new_series = split.params["to_series"]
    assert len(_shape(app)[A][new_series]) == 2 and f"{A}.2" not in _shape(app)[A]
    with pytest.raises(InvalidQuery):
        app.reconcile.move_instances([f"{A}.1.2"], ADMIN, "x")  # no destination
    with pytest.raises(InvalidQuery):
        app.reconcile.move_instances([f"{A}.1.2"], ADMIN, "x", to_series=f"{A}.1")  # already there
    with pytest.raises(NotFound):
        app.reconcile.move_instances(["1.2.3.4"], ADMIN, "x", to_series=f"{A}.1")
    assert split.id is not None and op.id is not None
    app.reconcile.undo(split.id, ADMIN, "undo")
    app.reconcile.undo(op.id, ADMIN, "undo")
    assert _sent(app, A) == before


def test_references_to_reallocated_instances_are_rewritten_on_the_way_out(app: Application) -> None:
    _fill(app)
    with app.index.session() as session:
        referenced = session.stored_instances(Level.IMAGE, [f"{A}.1.1", f"{A}.1.2"])
    # a Key Object Selection ("Of Interest") in study A referencing the images of series A.1
    _, kos = rejection_note(referenced, RejectionCode("113000", "Of Interest", ""), datetime.now(UTC))
    app.ingest.store(kos, TEST_ORIGIN)
    kos_uid = pydicom.dcmread(io.BytesIO(kos)).SOPInstanceUID
    original = _sent(app, A)[kos_uid]

    op = app.reconcile.move_series(f"{A}.1", B, ADMIN, "wrong study")
    new = {u["old"]: u["new"] for u in op.summary["uids"]}
    assert op.summary["references_rewritten"] == [kos_uid]
    ds = _dataset(_sent(app, A)[kos_uid])
    (evidence,) = ds.CurrentRequestedProcedureEvidenceSequence
    (series,) = evidence.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == new[f"{A}.1"]
    assert {r.ReferencedSOPInstanceUID for r in series.ReferencedSOPSequence} == {new[f"{A}.1.1"], new[f"{A}.1.2"]}
    assert {c.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for c in ds.ContentSequence} == {
        new[f"{A}.1.1"],
        new[f"{A}.1.2"],
    }
    # the metadata (WADO-RS) says the same
    (instance,) = [i for i in app.retrieve.instances(A) if i.sop_instance_uid == kos_uid]
    from openpacs.services.outbound import coerced_header

    header = coerced_header(instance)
    assert header["0040A375"]["Value"][0]["00081115"]["Value"][0]["0020000E"]["Value"] == [new[f"{A}.1"]]

    assert op.id is not None
    app.reconcile.undo(op.id, ADMIN, "undo")
    assert _sent(app, A)[kos_uid] == original


def test_reallocations_refuse_what_makes_no_sense(app: Application) -> None:
    _fill(app)
    before = _dump(app)
    with pytest.raises(InvalidQuery):
        app.reconcile.move_series(f"{A}.1", A, ADMIN, "x")
    with pytest.raises(NotFound):
        app.reconcile.move_series("1.2.3", B, ADMIN, "x")
    with pytest.raises(NotFound):
        app.reconcile.move_series(f"{A}.1", "1.2.3", ADMIN, "x")
    with pytest.raises(InvalidQuery):
        app.reconcile.merge_studies(A, A, ADMIN, "x")
    with pytest.raises(InvalidQuery):
        app.reconcile.split_study(A, ADMIN, "x")
    with pytest.raises(InvalidQuery):
        app.reconcile.split_study(A, ADMIN, "x", series=[f"{B}.1"])
    with pytest.raises(InvalidQuery):
        app.reconcile.move_series(f"{A}.1", B, ADMIN, "  ")
    assert _dump(app) == before
