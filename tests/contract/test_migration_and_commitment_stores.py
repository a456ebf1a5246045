"""The index stores of migrations, storage commitments and lossy copies, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from helpers import TEST_ORIGIN
from openpacs.bootstrap import Application
from openpacs.domain.commitment import CommitmentState
from openpacs.domain.jobs import Job, JobKind
from openpacs.domain.migration import ItemState, MigrationItem
from samples import sample_file

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CT = "1.2.840.10008.5.1.4.1.1.2"


def _job(app: Application) -> int:
    with app.index.session(write=True) as session:
        return session.jobs.add(Job(JobKind.MIGRATE, "migrate:old", {"source": "node"}), 1, NOW)


def test_migration_items_are_listed_once_counted_and_updated(app: Application) -> None:
    job = _job(app)
    items = [MigrationItem(f"1.2.3.{n}", f"P{n}", "20260101", there_series=1, there_instances=n) for n in range(1, 4)]
    with app.index.session(write=True) as session:
        assert session.migration.add_items(job, items, NOW) == 3
        assert session.migration.add_items(job, [*items, MigrationItem("1.2.3.9")], NOW) == 1  # listed once
    with app.index.session(write=True) as session:
        pending = session.migration.items(job, [ItemState.PENDING], 0, 2)
        assert [i.study_instance_uid for i in pending] == ["1.2.3.1", "1.2.3.2"]
        first = pending[0]
        assert first.pk is not None
        session.migration.update_item(
            first.pk, NOW, state=ItemState.MISMATCH, here_series=1, here_instances=0, detail={"missing": ["9.9"]}
        )
        with pytest.raises(ValueError, match="not columns"):
            session.migration.update_item(first.pk, NOW, job_pk=2)
    with app.index.session() as session:
        counts = session.migration.item_counts(job)
        assert (counts["pending"], counts["mismatch"], counts["instances_there"], counts["instances_here"]) == (
            3,
            1,
            6,
            0,
        )
        found = session.migration.items_by_uid(job, ["1.2.3.1", "7.7"])
        assert list(found) == ["1.2.3.1"] and found["1.2.3.1"].detail == {"missing": ["9.9"]}
        assert session.migration.items(job, [ItemState.PENDING], pending[1].pk or 0, 10)[0].study_instance_uid == (
            "1.2.3.3"
        )
    with app.index.session(write=True) as session:
        assert session.migration.reset_items(job, [ItemState.MISMATCH], ItemState.PENDING, NOW) == 1


def test_what_the_archive_holds_is_counted_by_study_and_by_instance(app: Application) -> None:
    import pydicom

    data = sample_file("CT_small.dcm").read_bytes()
    app.ingest.store(data, TEST_ORIGIN)
    ds = pydicom.dcmread(sample_file("CT_small.dcm"), stop_before_pixels=True)
    with app.index.session() as session:
        assert session.migration.study_counts([str(ds.StudyInstanceUID), "1.2.3"]) == {str(ds.StudyInstanceUID): (1, 1)}
        assert session.migration.instances_present([str(ds.SOPInstanceUID), "1.2.3"]) == {str(ds.SOPInstanceUID)}


def test_a_commitment_is_answered_once(app: Application) -> None:
    job = _job(app)
    refs = [(CT, "1.2.3.1"), (CT, "1.2.3.2")]
    with app.index.session(write=True) as session:
        session.commitments.add_commitment("9.9.1", job, "longterm", "1.2.3", refs, True, NOW)
    with app.index.session(write=True) as session:
        failed = [(CT, "1.2.3.2", 0x0112)]
        assert session.commitments.answer_commitment("9.9.1", CommitmentState.FAILED, failed, NOW)
        assert not session.commitments.answer_commitment("9.9.1", CommitmentState.COMMITTED, [], NOW)  # a repeat
    with app.index.session() as session:
        found = session.commitments.commitment("9.9.1")
        assert found is not None
        assert (found["state"], found["instances"], found["failed"], found["delete_after"]) == (
            "failed",
            refs,
            [(CT, "1.2.3.2", 0x0112)],
            True,
        )
        assert [c["transaction_uid"] for c in session.commitments.commitments_of_job(job)] == ["9.9.1"]
        assert session.commitments.commitment("0.0") is None


def test_the_first_lossy_copy_remembered_wins(app: Application) -> None:
    with app.index.session(write=True) as session:
        assert session.derived.derived_of("1.2.3.1", "1.2.840.10008.1.2.4.91:10") is None
        assert session.derived.add_derived("1.2.3.1", "1.2.840.10008.1.2.4.91:10", "5.5.1", NOW) == "5.5.1"
        assert session.derived.add_derived("1.2.3.1", "1.2.840.10008.1.2.4.91:10", "5.5.2", NOW) == "5.5.1"
        assert session.derived.add_derived("1.2.3.1", "1.2.840.10008.1.2.4.81:2", "5.5.3", NOW) == "5.5.3"
    with app.index.session() as session:
        assert session.derived.derived_of("1.2.3.1", "1.2.840.10008.1.2.4.91:10") == "5.5.1"
