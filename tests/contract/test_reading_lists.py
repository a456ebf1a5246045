"""Reading worklists on SQLite and PostgreSQL: filters, STAT first then longest waiting, unread
counts per saved filter, one reader at a time (two claims at once: exactly one wins), release
rules, saved filters per user and shared, the age filter, and assigned reading worklists."""

from __future__ import annotations

import io
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from helpers import TEST_ORIGIN
from openpacs.bootstrap import Application
from openpacs.domain.errors import Conflict, InvalidQuery, NotFound
from openpacs.domain.hl7 import MessageQuery
from openpacs.domain.reading_list import ReadingCriteria
from openpacs.domain.records import Actor
from openpacs.services.procedures import ProcedureService

ANNA, BOB = Actor.user("anna", "127.0.0.1"), Actor.user("bob", "127.0.0.1")


def _instance(study_uid: str, patient_id: str, accession: str, modality: str, body_part: str) -> bytes:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.PatientName, ds.AccessionNumber = patient_id, f"Doe^{patient_id}", accession
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.BodyPartExamined = modality, body_part
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _study(app: Application, accession: str, priority: str, department: str, modality: str = "CT",
           body_part: str = "CHEST", completed_at: datetime | None = None) -> str:  # fmt: skip
    """An order (via a worklist entry) and its study, stored, linked and completed (now, or at
    *completed_at*)."""
    study_uid = str(generate_uid())
    item = Dataset()
    item.PatientID, item.PatientName = f"P-{accession}", f"Doe^{accession}"
    item.AccessionNumber, item.StudyInstanceUID = accession, study_uid
    item.RequestedProcedureID, item.RequestedProcedurePriority = f"RP-{accession}", priority
    item.RequestingService = department
    sps = Dataset()
    sps.Modality, sps.ScheduledProcedureStepID = modality, f"S-{accession}"
    sps.ScheduledProcedureStepStartDate = date.today().strftime("%Y%m%d")
    item.ScheduledProcedureStepSequence = [sps]
    app.worklist.create(dict(item.to_json_dict()), ANNA)
    app.ingest.store(_instance(study_uid, f"P-{accession}", accession, modality, body_part), TEST_ORIGIN)
    app.workflow.consume()  # links the study (order-uid) and moves it to in-progress
    procedures = app.procedures if completed_at is None else ProcedureService(app.index, clock=lambda: completed_at)
    procedures.set_status(_procedure_pk(app, accession), "completed", ANNA)
    return study_uid


def _procedure_pk(app: Application, accession: str) -> int:
    (procedure,) = [p for o in app.orders.orders(accession=accession) for p in o.procedures]
    return int(procedure.pk)


def _accessions(items: list[Any]) -> list[str]:
    return [i.accession_number for i in items]


def test_filters_sort_and_counts(app: Application) -> None:
    routine = _study(app, "A1", "ROUTINE", "RAD")
    stat = _study(app, "A2", "STAT", "ER")
    _study(app, "A3", "HIGH", "RAD", modality="MR", body_part="HEAD")
    everything = app.reading.items(ReadingCriteria(), "anna")
    assert _accessions(everything) == ["A2", "A3", "A1"]  # STAT, HIGH, ROUTINE
    assert everything[0].study_instance_uid == stat and everything[0].status == "completed"
    assert _accessions(app.reading.items(ReadingCriteria(modalities=("MR",)), "anna")) == ["A3"]
    assert _accessions(app.reading.items(ReadingCriteria(body_parts=("CHEST",)), "anna")) == ["A2", "A1"]
    assert _accessions(app.reading.items(ReadingCriteria(departments=("RAD",)), "anna")) == ["A3", "A1"]
    assert _accessions(app.reading.items(ReadingCriteria(priorities=("STAT", "HIGH")), "anna")) == ["A2", "A3"]
    assert app.reading.items(ReadingCriteria(min_age_minutes=120), "anna") == []  # all completed just now
    assert len(app.reading.items(ReadingCriteria(max_age_minutes=120), "anna")) == 3
    # a final report takes a study off the unread count
    (procedure,) = [p for o in app.orders.orders(accession="A1") for p in o.procedures]
    app.procedures.set_status(procedure.pk, "final", ANNA)
    app.reading.save_filter("ct", ReadingCriteria(modalities=("CT",)), ANNA, shared=False)
    counts = app.reading.counts("anna")
    assert counts == {"unread": 2, "filters": {"ct": 1}}
    assert routine not in [i.study_instance_uid for i in app.reading.items(ReadingCriteria(), "anna")]
    with pytest.raises(InvalidQuery):
        ReadingCriteria.from_json({"statuses": ["read"]})
    with pytest.raises(InvalidQuery):
        ReadingCriteria.from_json({"colour": "red"})


def test_one_reader_at_a_time(app: Application) -> None:
    study = _study(app, "B1", "ROUTINE", "RAD")
    winners: list[str] = []
    losers: list[str] = []
    barrier = threading.Barrier(2)

    def claim(actor: Actor) -> None:
        barrier.wait()
        try:
            app.reading.claim(study, actor)
            winners.append(actor.id)
        except Conflict as exc:
            losers.append(exc.reason)

    threads = [threading.Thread(target=claim, args=(a,)) for a in (ANNA, BOB)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and len(losers) == 1 and winners[0] in losers[0]
    reader = winners[0]
    other = BOB if reader == "anna" else ANNA
    (item,) = app.reading.items(ReadingCriteria(), other.id)
    assert item.claimed_by == reader  # visible to the others
    assert app.reading.items(ReadingCriteria(unclaimed=True), other.id) == []
    assert len(app.reading.items(ReadingCriteria(mine=True), reader)) == 1
    assert app.reading.claim(study, Actor.user(reader, ""))["claimed_by"] == reader  # claiming again is fine
    with pytest.raises(Conflict):
        app.reading.release(study, other)
    app.reading.release(study, other, force=True)  # an administrator's force
    with pytest.raises(NotFound):
        app.reading.release(study, other)
    with pytest.raises(NotFound):
        app.reading.claim("1.2.3.999", ANNA)


def test_saved_filters_per_user_and_shared(app: Application) -> None:
    app.reading.save_filter("mine", ReadingCriteria(modalities=("CT",)), ANNA, shared=False)
    app.reading.save_filter("stat", ReadingCriteria(priorities=("STAT",)), BOB, shared=True)
    assert [(f.name, f.owner) for f in app.reading.filters("anna")] == [("mine", "anna"), ("stat", "")]
    assert [f.name for f in app.reading.filters("bob")] == ["stat"]
    assert app.reading.criteria_of("stat", "anna").priorities == ("STAT",)
    app.reading.save_filter("mine", ReadingCriteria(modalities=("MR",)), ANNA, shared=False)  # replaced
    assert app.reading.criteria_of("mine", "anna").modalities == ("MR",)
    with pytest.raises(NotFound):
        app.reading.criteria_of("mine", "bob")
    app.reading.delete_filter("mine", ANNA, shared=False)
    with pytest.raises(NotFound):
        app.reading.delete_filter("mine", ANNA, shared=False)


def test_assigned_reading_worklists(app: Application) -> None:
    study = _study(app, "C1", "ROUTINE", "RAD")
    _study(app, "C2", "ROUTINE", "RAD")
    now = datetime.now(UTC)
    with app.index.session(write=True) as session:
        session.workflow.assign(study, "neuro", "rule:test", now - timedelta(seconds=1))
    (item,) = app.reading.items(ReadingCriteria(worklist="neuro"), "anna")
    assert item.study_instance_uid == study and item.worklists == ["neuro"]


def test_unscheduled_studies_count_as_completed_without_priority(app: Application) -> None:
    """A study without an order is in the list (completed, no priority), after the prioritised ones."""
    _study(app, "D1", "LOW", "RAD")
    unscheduled = str(generate_uid())
    app.ingest.store(_instance(unscheduled, "P-U1", "", "MR", "KNEE"), TEST_ORIGIN)
    app.workflow.consume()
    listed = app.reading.items(ReadingCriteria(), "anna")
    assert [i.study_instance_uid for i in listed][1:] == [unscheduled]
    item = listed[1]
    assert (item.status, item.priority, item.procedure_pk, item.department) == ("completed", "", None, "")
    assert item.body_parts == ["KNEE"] and item.to_json()["modalities"] == ["MR"]
    assert app.reading.items(ReadingCriteria(priorities=("LOW",)), "anna")[0].accession_number == "D1"
    assert app.reading.items(ReadingCriteria(departments=("RAD",)), "anna")[0].accession_number == "D1"
    assert app.reading.counts("anna")["unread"] == 2


def test_age_is_time_in_the_status(app: Application) -> None:
    now = datetime.now(UTC)
    old = _study(app, "E1", "ROUTINE", "RAD", completed_at=now - timedelta(hours=3))
    new = _study(app, "E2", "STAT", "RAD")
    assert [i.study_instance_uid for i in app.reading.items(ReadingCriteria(), "anna")] == [new, old]  # STAT first
    assert [i.study_instance_uid for i in app.reading.items(ReadingCriteria(min_age_minutes=120), "anna")] == [old]
    assert [i.study_instance_uid for i in app.reading.items(ReadingCriteria(max_age_minutes=120), "anna")] == [new]
    between = ReadingCriteria(min_age_minutes=170, max_age_minutes=190)
    assert [i.study_instance_uid for i in app.reading.items(between, "anna")] == [old]
    (item,) = app.reading.items(ReadingCriteria(priorities=("ROUTINE",)), "anna")
    assert item.status_at is not None and abs((item.status_at - (now - timedelta(hours=3))).total_seconds()) < 2
    # longest waiting first within a priority
    older = _study(app, "E3", "ROUTINE", "RAD", completed_at=now - timedelta(hours=5))
    routine = app.reading.items(ReadingCriteria(priorities=("ROUTINE",)), "anna")
    assert [i.study_instance_uid for i in routine] == [older, old]


def test_a_study_of_several_procedures_shows_once_with_the_most_urgent(app: Application) -> None:
    s1 = _study(app, "F1", "ROUTINE", "RAD")
    s2 = _study(app, "F2", "STAT", "ER")
    s3 = _study(app, "F3", "HIGH", "RAD")
    app.procedures.link(_procedure_pk(app, "F2"), s1, ANNA)
    app.procedures.link(_procedure_pk(app, "F3"), s1, ANNA)
    listed = app.reading.items(ReadingCriteria(), "anna")
    assert [i.study_instance_uid for i in listed] == [s1, s2, s3]  # s1 and s2 tie on F2: older study first
    assert (listed[0].priority, listed[0].accession_number, listed[0].department) == ("STAT", "F2", "ER")
    assert [i.study_instance_uid for i in app.reading.items(ReadingCriteria(), "anna", limit=2)] == [s1, s2]
    assert app.reading.items(ReadingCriteria(priorities=("ROUTINE",)), "anna")[0].accession_number == "F1"
    assert app.reading.counts("anna")["unread"] == 3


def test_counts_per_filter_and_claims_audited_once(app: Application) -> None:
    study = _study(app, "G1", "ROUTINE", "RAD")
    _study(app, "G2", "STAT", "ER", modality="MR")
    app.procedures.set_status(_procedure_pk(app, "G2"), "final", ANNA)
    app.reading.save_filter("finals", ReadingCriteria(statuses=("final",)), ANNA, shared=False)
    app.reading.save_filter("ct", ReadingCriteria(modalities=("MR",)), BOB, shared=True)
    app.reading.save_filter("ct", ReadingCriteria(modalities=("CT",)), ANNA, shared=False)
    assert len(app.reading.items(ReadingCriteria(statuses=("final",)), "anna")) == 1
    assert app.reading.counts("anna") == {"unread": 1, "filters": {"ct": 1, "finals": 0}}
    assert app.reading.counts("bob") == {"unread": 1, "filters": {"ct": 0}}  # the shared MR filter
    app.reading.claim(study, ANNA)
    app.reading.claim(study, ANNA)
    app.reading.release(study, ANNA)
    actions = [e["action"] for e in app.archive.audit(0, 1000) if str(e["action"]).startswith("reading-")]
    assert actions == ["reading-filter-saved"] * 3 + ["reading-claimed", "reading-released"]
    with pytest.raises(InvalidQuery):
        ReadingCriteria(unclaimed=True, mine=True)
    with pytest.raises(InvalidQuery):
        ReadingCriteria.from_json({"priorities": ["URGENT"]})
    with pytest.raises(InvalidQuery):
        ReadingCriteria.from_json({"min_age_minutes": "soon"})
    criteria = ReadingCriteria.from_json({"modalities": "ct,mr", "unclaimed": "true", "max_age_minutes": "30"})
    assert criteria == ReadingCriteria(modalities=("CT", "MR"), unclaimed=True, max_age_minutes=30)
    assert ReadingCriteria.from_json(criteria.to_json()) == criteria


def test_a_final_report_ends_the_claim(app: Application) -> None:
    study = _study(app, "D1", "ROUTINE", "RAD")
    app.reading.claim(study, ANNA)
    oru = (
        "MSH|^~\\&|RPT|HOSP|PACS|HOSP|2026||ORU^R01|RD1|P|2.5.1\rPID|||P-D1^^^HOSP^MR\r"
        "OBR|1|||CT||||||||||||||D1|RP-D1||||||F\rOBX|1|TX|IMP^Impression||Normal.\r"
    )
    assert b"MSA|AA|" in app.hl7.receive(oru.encode(), "127.0.0.1:4000")
    app.hl7_processor.process_pending()
    (message,) = app.hl7.messages(MessageQuery(control_id="RD1"))
    assert message.status == "processed", message.error
    assert "no order" not in message.error
    (item,) = app.reading.items(ReadingCriteria(statuses=("final",)), "bob")
    assert item.study_instance_uid == study and item.claimed_by == ""
