"""The Index port, on SQLite and PostgreSQL, through the services that use it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa

from conftest import _pg_available, create_pg_database, drop_pg_database, require
from helpers import TEST_ORIGIN, application, identifier
from matching_table import CASES, Case, instances, series_key, study_key
from openpacs.bootstrap import Application
from openpacs.domain.errors import DuplicateRejected, InvalidQuery
from openpacs.domain.matching import Model
from openpacs.domain.records import Actor, ActorType, Issuer, Origin, StoreStatus
from openpacs.domain.tags import Level
from openpacs.services.outbound import dataset_offset
from samples import sample_file


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def table_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Application]:
    """The matching table's studies, stored once per backend for the module."""
    tmp = tmp_path_factory.mktemp("table")
    db = None
    if request.param == "postgresql":
        require(_pg_available(), "PostgreSQL on 127.0.0.1:5432")
        db = create_pg_database()
        url = db.url
    else:
        url = f"sqlite:///{tmp / 'index.sqlite3'}"
    app_ = application(tmp, url)
    try:
        for _uid, data in instances():
            assert app_.ingest.store(data, TEST_ORIGIN).status is StoreStatus.STORED
        yield app_
    finally:
        app_.close()
        if db is not None:
            drop_pg_database(db)


def _answers(app: Application, case: Case) -> set[str]:
    model = Model.PATIENT_ROOT if case.level == "PATIENT" else Model.STUDY_ROOT
    keys = dict(case.keys)
    unique = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID"}[case.level]
    keys.setdefault(unique, "")
    query = app.query.parse(identifier(case.level, keys, case.charset), model)
    found = set()
    for answer in app.query.find(query, Actor(ActorType.SYSTEM, "tests")):
        if case.level == "PATIENT":
            found.add(answer["00100020"]["Value"][0])
        elif case.level == "STUDY":
            found.add(study_key(answer["0020000D"]["Value"][0]))
        else:
            found.add(series_key(answer["0020000E"]["Value"][0]))
    return found


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matching_table(table_app: Application, case: Case) -> None:
    assert _answers(table_app, case) == case.expected


def _ct(*, other_ids: bool = False, **changes: str) -> bytes:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    if not other_ids:
        del ds.OtherPatientIDsSequence
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _patients(app: Application) -> int:
    return app.archive.stats().patients


def test_attach_by_study_then_identifier_then_new(app: Application) -> None:
    base = pydicom.dcmread(sample_file("CT_small.dcm"))
    app.ingest.store(_ct(), TEST_ORIGIN)
    # same study, another series: same patient
    app.ingest.store(_ct(SOPInstanceUID="1.2.3.1", SeriesInstanceUID="1.2.3"), TEST_ORIGIN)
    # another study, same identifier: same patient
    app.ingest.store(_ct(SOPInstanceUID="1.2.4.1", SeriesInstanceUID="1.2.4", StudyInstanceUID="1.2.4.0"), TEST_ORIGIN)
    assert _patients(app) == 1
    # another study, another identifier: a new patient
    app.ingest.store(
        _ct(SOPInstanceUID="1.2.5.1", SeriesInstanceUID="1.2.5", StudyInstanceUID="1.2.5.0", PatientID="OTHER"),
        TEST_ORIGIN,
    )
    stats = app.archive.stats()
    assert (stats.patients, stats.studies, stats.series, stats.instances) == (2, 3, 4, 4)
    assert base.PatientID != "OTHER"
    assert app.archive.identity_conflicts() == []


def test_other_patient_ids_are_identifiers_too(app: Application) -> None:
    app.ingest.store(_ct(other_ids=True), TEST_ORIGIN)  # PatientID 1CT1, Other Patient ID ABCD1234
    # attached by its other identifier? no: attachment is by the primary identifier only,
    # and an Other Patient ID held by another patient is flagged
    outcome = app.ingest.store(
        _ct(
            other_ids=True,
            SOPInstanceUID="1.2.5.1",
            SeriesInstanceUID="1.2.5",
            StudyInstanceUID="1.2.5.0",
            PatientID="OTHER",
        ),
        TEST_ORIGIN,
    )
    assert outcome.identity_conflict
    flagged = {(c.kind, c.details["identifier"]) for c in app.archive.identity_conflicts()}
    assert ("other-identifier", "ABCD1234") in flagged


def test_demographic_disagreement_is_flagged_not_merged(app: Application) -> None:
    app.ingest.store(_ct(PatientName="Doe^John", PatientBirthDate="19700101"), TEST_ORIGIN)
    # normalisation: case, trailing carets, accents do not count
    outcome = app.ingest.store(_ct(SOPInstanceUID="1.2.6.1", PatientName="DOE^JÖHN^^"), TEST_ORIGIN)
    assert not outcome.identity_conflict
    outcome = app.ingest.store(
        _ct(SOPInstanceUID="1.2.6.2", PatientName="Roe^Richard", PatientBirthDate="19700101"), TEST_ORIGIN
    )
    assert outcome.status is StoreStatus.STORED and outcome.identity_conflict
    # a second instance with the same disagreement is not flagged again
    app.ingest.store(_ct(SOPInstanceUID="1.2.6.3", PatientName="Roe^Richard", PatientBirthDate="19700101"), TEST_ORIGIN)
    conflicts = app.archive.identity_conflicts()
    assert [c.kind for c in conflicts] == ["demographics"]
    assert conflicts[0].details["index_vs_object"]["PatientName"] == ["Doe^John", "Roe^Richard"]
    # the index keeps its demographics
    query = app.query.parse(identifier("PATIENT", {"PatientID": "", "PatientName": ""}), Model.PATIENT_ROOT)
    names = [a["00100010"]["Value"][0]["Alphabetic"] for a in app.query.find(query, TEST_ORIGIN.actor)]
    assert names == ["Doe^John"]


def test_known_study_under_another_identifier_is_flagged(app: Application) -> None:
    app.ingest.store(_ct(PatientID="P-A"), TEST_ORIGIN)
    outcome = app.ingest.store(_ct(SOPInstanceUID="1.2.7.1", PatientID="P-B"), TEST_ORIGIN)
    assert outcome.identity_conflict
    assert app.archive.stats().patients == 1
    (conflict,) = app.archive.identity_conflicts()
    assert conflict.kind == "identifier"
    assert conflict.details["object_identifier"] == "P-B"
    # the differing identifier was not added to the patient: a new study with P-B is a new patient
    app.ingest.store(
        _ct(SOPInstanceUID="1.2.8.1", StudyInstanceUID="1.2.8", SeriesInstanceUID="1.2.8.2", PatientID="P-B"),
        TEST_ORIGIN,
    )
    assert app.archive.stats().patients == 2


def test_issuers_keep_identifiers_apart_and_default_issuer_applies(tmp_path: Path, database_url: str) -> None:
    app = application(tmp_path, database_url, identity={"default_issuer": "SITE"})
    try:
        app.ingest.store(_ct(PatientID="123", IssuerOfPatientID="HOSP_A"), TEST_ORIGIN)
        app.ingest.store(
            _ct(
                SOPInstanceUID="1.2.9.1",
                StudyInstanceUID="1.2.9",
                SeriesInstanceUID="1.2.9.2",
                PatientID="123",
                IssuerOfPatientID="HOSP_B",
            ),
            TEST_ORIGIN,
        )
        assert app.archive.stats().patients == 2
        origin = Origin(TEST_ORIGIN.actor, "import", default_issuer=Issuer("SITE"))
        app.ingest.store(
            _ct(SOPInstanceUID="1.2.10.1", StudyInstanceUID="1.2.10", SeriesInstanceUID="1.2.10.2", PatientID="123"),
            origin,
        )
        assert app.archive.stats().patients == 3
        # the default issuer fills the missing issuer in the patient's attribute set
        query = app.query.parse(
            identifier("PATIENT", {"PatientID": "123", "IssuerOfPatientID": "SITE"}), Model.PATIENT_ROOT
        )
        assert len(list(app.query.find(query, TEST_ORIGIN.actor))) == 1
    finally:
        app.close()


def test_duplicates_keep_first_and_report_differences(app: Application) -> None:
    first = _ct()
    assert app.ingest.store(first, TEST_ORIGIN).status is StoreStatus.STORED
    assert app.ingest.store(first, TEST_ORIGIN).status is StoreStatus.DUPLICATE
    differs = app.ingest.store(_ct(StudyDescription="changed"), TEST_ORIGIN)
    assert differs.status is StoreStatus.DUPLICATE_DIFFERS
    assert app.archive.stats().instances == 1


def test_duplicate_policy_reject_and_overwrite(tmp_path: Path, database_url: str) -> None:
    rejecting = application(tmp_path / "r", database_url, dicom={"duplicate_policy": "reject"})
    try:
        rejecting.ingest.store(_ct(), TEST_ORIGIN)
        with pytest.raises(DuplicateRejected):
            rejecting.ingest.store(_ct(), TEST_ORIGIN)
    finally:
        rejecting.close()


def test_overwrite_supersedes_the_blob_with_a_grace_period(tmp_path: Path, database_url: str) -> None:
    app = application(tmp_path, database_url, dicom={"duplicate_policy": "overwrite"})
    try:
        app.ingest.store(_ct(), TEST_ORIGIN)
        outcome = app.ingest.store(_ct(StudyDescription="second copy"), TEST_ORIGIN)
        assert outcome.status is StoreStatus.REPLACED
        with app.index.session() as session:
            pending = session.due_deletions(app.committer._clock() + __import__("datetime").timedelta(days=1), 10)
        assert [p.reason for p in pending] == ["replaced by a newer copy (overwrite policy)"]
        (instance,) = app.retrieve.resolve(
            identifier("STUDY", {"StudyInstanceUID": pydicom.dcmread(sample_file("CT_small.dcm")).StudyInstanceUID}),
            Model.STUDY_ROOT,
        ).instances
        assert b"second copy" in app.outbound.read(instance)
    finally:
        app.close()


def test_change_feed_lists_every_creation_in_order(app: Application) -> None:
    for _uid, data in instances()[:3]:
        app.ingest.store(data, TEST_ORIGIN)
    changes = app.archive.changes_since(0, 100)
    assert [c.seq for c in changes] == list(range(1, len(changes) + 1))
    kinds = [(c.change_type, c.level) for c in changes]
    assert kinds[:4] == [
        ("patient_created", Level.PATIENT),
        ("study_created", Level.STUDY),
        ("series_created", Level.SERIES),
        ("instance_stored", Level.IMAGE),
    ]
    assert app.archive.changes_since(changes[1].seq, 100) == changes[2:]
    app.archive.save_checkpoint("test-consumer", changes[-1].seq)
    assert app.archive.checkpoint("test-consumer") == changes[-1].seq


def test_counts_and_computed_keys(table_app: Application) -> None:
    query = table_app.query.parse(
        identifier(
            "STUDY",
            {
                "StudyInstanceUID": "",
                "NumberOfStudyRelatedSeries": "",
                "NumberOfStudyRelatedInstances": "",
                "ModalitiesInStudy": "",
                "PatientID": "PID2",
            },
        ),
        Model.STUDY_ROOT,
    )
    (answer,) = table_app.query.find(query, TEST_ORIGIN.actor)
    assert answer["00201206"]["Value"] == [2]
    assert answer["00201208"]["Value"] == [2]
    assert answer["00080061"]["Value"] == ["CT", "MR"]


def test_invalid_queries_are_refused(table_app: Application) -> None:
    with pytest.raises(InvalidQuery):
        table_app.query.parse({"00100010": {"vr": "PN"}}, Model.STUDY_ROOT)
    with pytest.raises(InvalidQuery):
        table_app.query.parse(identifier("PATIENT", {"PatientID": ""}), Model.STUDY_ROOT)
    with pytest.raises(InvalidQuery):
        table_app.query.parse(identifier("STUDY", {"PatientID": "P*"}), Model.PATIENT_ROOT)


def test_audit_records_stores_and_queries(table_app: Application) -> None:
    query = table_app.query.parse(identifier("STUDY", {"PatientID": "PID1"}), Model.STUDY_ROOT)
    list(table_app.query.find(query, Actor.dicom("WS1", "10.1.2.3")))
    table_app.committer.submit(lambda _s, _b: None)  # reads are audited in the next transaction
    with table_app.index.session() as session:
        entries = session.audit_entries()
    stores = [e for e in entries if e["action"] == "store"]
    assert len(stores) == len(instances()) and all(e["outcome"] == "success" for e in stores)
    (find,) = [e for e in entries if e["action"] == "query" and e["actor_id"] == "WS1@10.1.2.3"]
    assert find["details"]["answers"] == 2 and find["details"]["keys"] == {"PatientID": ["PID1"]}


def test_limit_and_offset(table_app: Application) -> None:
    def uids(keys: dict[str, str], **paging: int) -> list[str]:
        query = table_app.query.parse(identifier("STUDY", {"StudyInstanceUID": "", **keys}), Model.STUDY_ROOT)
        return [a["0020000D"]["Value"][0] for a in table_app.query.find(query, TEST_ORIGIN.actor, **paging)]

    everything = uids({})
    assert uids({}, limit=2, offset=1) == everything[1:3]
    assert uids({}, offset=4) == everything[4:]
    # with a condition evaluated outside SQL (a sequence) the paging still applies
    filtered = uids({"PatientName": "D*"})
    assert uids({"PatientName": "D*"}, limit=1, offset=1) == filtered[1:2]


def test_outbound_coercion_applies_the_index_sets(app: Application) -> None:
    """An object whose demographics disagree goes out with the index's, the old values kept."""
    app.ingest.store(_ct(PatientName="Doe^John"), TEST_ORIGIN)
    conflicting = _ct(SOPInstanceUID="1.2.11.1", PatientName="Roe^Richard")
    app.ingest.store(conflicting, TEST_ORIGIN)
    request = app.retrieve.resolve(
        identifier(
            "IMAGE",
            {
                "StudyInstanceUID": pydicom.dcmread(sample_file("CT_small.dcm")).StudyInstanceUID,
                "SeriesInstanceUID": "",
                "SOPInstanceUID": "1.2.11.1",
            },
        ),
        Model.STUDY_ROOT,
    )
    (instance,) = request.instances
    _, data = app.outbound.encode(instance, ("1.2.840.10008.1.2.1",))
    ds = pydicom.filereader.read_dataset(io.BytesIO(data), is_implicit_VR=False, is_little_endian=True)
    assert ds.PatientName == "Doe^John"
    (item,) = ds.OriginalAttributesSequence
    assert item.ModifiedAttributesSequence[0].PatientName == "Roe^Richard"
    assert item.ReasonForTheAttributeModification == "COERCE"
    # the first object needs nothing: the stored bytes go out as they are
    (first,) = app.retrieve.resolve(
        identifier(
            "IMAGE",
            {
                "StudyInstanceUID": instance.study_instance_uid,
                "SeriesInstanceUID": "",
                "SOPInstanceUID": pydicom.dcmread(sample_file("CT_small.dcm")).SOPInstanceUID,
            },
        ),
        Model.STUDY_ROOT,
    ).instances
    stored = app.outbound.read(first)
    _, sent = app.outbound.encode(first, ("1.2.840.10008.1.2.1",))
    assert sent == stored[dataset_offset(stored) :]


def test_coercion_of_a_compressed_instance_keeps_its_compressed_pixel_data(app: Application) -> None:
    """Sent in its stored (compressed) syntax, a coerced instance keeps its pixel data as it is."""
    original = pydicom.dcmread(sample_file("JPEG-LL.dcm"))
    app.ingest.store(Path(sample_file("JPEG-LL.dcm")).read_bytes(), TEST_ORIGIN)
    original.SOPInstanceUID = original.SOPInstanceUID + ".9"
    original.PatientName = "Other^Name"
    buffer = io.BytesIO()
    original.save_as(buffer, enforce_file_format=True)
    app.ingest.store(buffer.getvalue(), TEST_ORIGIN)
    (instance,) = app.retrieve.instances(original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID)
    syntax, data = app.outbound.encode(instance, (original.file_meta.TransferSyntaxUID,))
    assert syntax == original.file_meta.TransferSyntaxUID
    ds = pydicom.filereader.read_dataset(io.BytesIO(data), is_implicit_VR=False, is_little_endian=True)
    assert ds.PatientName != "Other^Name"
    assert ds.OriginalAttributesSequence[0].ModifiedAttributesSequence[0].PatientName == "Other^Name"
    assert ds.PixelData == original.PixelData


def test_a_node_default_issuer_applies_to_its_objects(app: Application) -> None:
    from openpacs.domain.records import Node

    app.nodes.add(
        Node(name="ct", ae_title="CT7", host="127.0.0.1", port=104, default_issuer="RADIOLOGY"), TEST_ORIGIN.actor
    )
    decision = app.nodes.decide("CT7", "127.0.0.1")
    origin = app.nodes.origin(decision, "CT7", "OPENPACS", "127.0.0.1")
    assert origin.default_issuer == Issuer("RADIOLOGY")
    app.ingest.store(_ct(), origin)
    query = app.query.parse(
        identifier("PATIENT", {"PatientID": "", "IssuerOfPatientID": "RADIOLOGY"}), Model.PATIENT_ROOT
    )
    assert len(list(app.query.find(query, TEST_ORIGIN.actor))) == 1


def test_concurrent_copies_of_one_instance_store_one(app: Application) -> None:
    from concurrent.futures import ThreadPoolExecutor

    copies = [_ct(StudyDescription=f"copy {n}") for n in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(lambda data: app.ingest.store(data, TEST_ORIGIN), copies))
    statuses = sorted(str(o.status) for o in outcomes)
    assert statuses == ["duplicate-differs"] * 5 + ["stored"]
    assert app.archive.stats().instances == 1


def test_a_series_of_another_study_is_refused_and_audited(tmp_path: Path, database_url: str) -> None:
    from openpacs.adapters.storage.filesystem import FilesystemBlobStore
    from openpacs.domain.errors import InvalidInstance

    store = FilesystemBlobStore(tmp_path / "storage")
    app = application(tmp_path, database_url, blobs=store)
    try:
        app.ingest.store(_ct(), TEST_ORIGIN)
        with pytest.raises(InvalidInstance, match="already belongs to study"):
            app.ingest.store(_ct(SOPInstanceUID="1.2.12.1", StudyInstanceUID="1.2.12"), TEST_ORIGIN)
        assert app.archive.stats().instances == 1
        assert len(list((tmp_path / "storage").rglob("*.dcm"))) == 1
        with app.index.session() as session:
            refused = [e for e in session.audit_entries() if e["outcome"] == "refused"]
        assert refused and "already belongs to study" in refused[0]["details"]["reason"]
    finally:
        app.close()


def test_an_oversized_instance_is_refused_and_audited(tmp_path: Path, database_url: str) -> None:
    from openpacs.domain.errors import InstanceTooLarge

    app = application(tmp_path, database_url, dicom={"max_instance_bytes": 2048})
    try:
        with pytest.raises(InstanceTooLarge):
            app.ingest.store(_ct(), TEST_ORIGIN)
        app.committer.submit(lambda _s, _b: None)
        with app.index.session() as session:
            (entry,) = session.audit_entries()
        assert (entry["outcome"], entry["details"]["status"]) == ("refused", "0xA700")
    finally:
        app.close()


def test_migration_0003_records_level_values_of_existing_instances(app: Application) -> None:
    """Instances stored before 0003 get their level elements; retrieval answers the same after."""
    from alembic import command
    from alembic.config import Config

    from openpacs.adapters.index import tables as t
    from openpacs.adapters.index.engine import MIGRATIONS, upgrade_schema

    app.ingest.store(_ct(PatientName="Doe^John"), TEST_ORIGIN)
    app.ingest.store(_ct(SOPInstanceUID="1.2.11.1", PatientName="Roe^Richard"), TEST_ORIGIN)
    study = pydicom.dcmread(sample_file("CT_small.dcm")).StudyInstanceUID
    before = app.retrieve.instances(study)
    engine = app.index.engine  # type: ignore[attr-defined]
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    with engine.connect() as connection:
        assert "level_values" not in {c["name"] for c in sa.inspect(connection).get_columns("instance")}
    upgrade_schema(engine)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(t.instance.c.sop_instance_uid, t.instance.c.level_values)).all()
    assert len(rows) == 2
    for uid, values in rows:
        assert values["0020000D"]["Value"] == [study]
        assert "7FE00010" not in values and "00080018" not in values
        name = "Roe^Richard" if uid == "1.2.11.1" else "Doe^John"
        assert values["00100010"]["Value"] == [{"Alphabetic": name}]
    after = app.retrieve.instances(study)
    assert [i.level_values for i in after] == [i.level_values for i in before]
    assert [app.outbound.encode(i, ("1.2.840.10008.1.2.1",))[1] for i in after] == [
        app.outbound.encode(i, ("1.2.840.10008.1.2.1",))[1] for i in before
    ]


def test_the_migrations_build_the_schema_of_tables_py(app: Application) -> None:
    """Alembic finds no difference between the migrated database and tables.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from openpacs.adapters.index.tables import metadata

    engine = app.index.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, metadata)
    assert differences == []
