"""C-FIND, C-MOVE and C-GET against a real server: the matching table over the wire,
character sets, C-CANCEL, move destinations, DCMTK's findscu/movescu/getscu."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from conftest import ServerProcess, StoreScp, run_dcmtk
from dimse_client import c_find
from matching_table import CASES, Case, instances, series_key, study_key
from openpacs.dimse import commands as cmd
from openpacs.dimse.negotiation import request

pytestmark = pytest.mark.usefixtures("dcmtk")


@pytest.fixture(scope="module")
def loaded(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """The matching table's studies, sent with DCMTK's storescu."""
    folder = tmp_path_factory.mktemp("table")
    for uid, data in instances():
        (folder / f"{uid}.dcm").write_bytes(data)
    result = run_dcmtk("storescu", "-aec", "OPENPACS", "+sd", "127.0.0.1", str(server.dicom_port), str(folder))
    assert result.returncode == 0, result.stderr
    return server


def _identifier(case: Case) -> Dataset:
    ds = Dataset()
    if case.charset:
        ds.SpecificCharacterSet = case.charset
    ds.QueryRetrieveLevel = case.level
    unique = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID"}[case.level]
    setattr(ds, unique, "")
    for keyword, value in case.keys.items():
        setattr(ds, keyword, value.split("\\") if "\\" in value else value)
    return ds


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matching_table_over_the_wire(loaded: ServerProcess, case: Case) -> None:
    result = c_find(loaded.dicom_port, _identifier(case), patient_root=case.level == "PATIENT")
    assert result.statuses[-1] == 0x0000
    if case.level == "PATIENT":
        found = {str(a.PatientID) for a in result.answers}
    elif case.level == "STUDY":
        found = {study_key(a.StudyInstanceUID) for a in result.answers}
    else:
        found = {series_key(a.SeriesInstanceUID) for a in result.answers}
    assert found == case.expected


def test_names_come_back_intact_in_their_character_set(loaded: ServerProcess) -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "Müller*"
    ds.ReferringPhysicianName = ""
    ds.StudyInstanceUID = ""
    (answer,) = c_find(loaded.dicom_port, ds).answers
    assert answer.SpecificCharacterSet == "ISO_IR 100"
    assert answer.PatientName == "Müller^Jürgen"
    assert answer.ReferringPhysicianName == "Weiß^Eva"
    # a name Latin-1 cannot carry comes back in UTF-8 even to a Latin-1 query
    ds.PatientName = "*Briain*"
    (answer,) = c_find(loaded.dicom_port, ds).answers
    assert answer.PatientName == "Ó Briain^Seán"
    ds.SpecificCharacterSet = "ISO_IR 192"
    (answer,) = c_find(loaded.dicom_port, ds).answers
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert answer.PatientName == "Ó Briain^Seán"


def test_findscu_prints_the_answers(loaded: ServerProcess) -> None:
    result = run_dcmtk(
        "findscu",
        "-S",
        "-aec",
        "OPENPACS",
        "127.0.0.1",
        str(loaded.dicom_port),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientID=PID1",
        "-k",
        "StudyInstanceUID",
        "-k",
        "ModalitiesInStudy",
        "-k",
        "NumberOfStudyRelatedInstances",
        "-k",
        "PatientName",
    )
    output = result.stdout + result.stderr
    assert output.count("Find Response:") == 2
    assert "Doe^John" in output and "(0008,0061) CS [MR]" in output and "(0008,0061) CS [CT]" in output


def test_c_find_answers_carry_only_the_requested_keys(loaded: ServerProcess) -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = next(a for a in CASES if a.name == "series modality").keys["StudyInstanceUID"]
    ds.SeriesInstanceUID = ""
    ds.Modality = ""
    ds.NumberOfSeriesRelatedInstances = ""
    ds.BodyPartExamined = ""  # not in the objects: returned empty
    answers = c_find(loaded.dicom_port, ds).answers
    assert len(answers) == 2
    for answer in answers:
        assert {e.keyword for e in answer} == {
            "QueryRetrieveLevel",
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "Modality",
            "NumberOfSeriesRelatedInstances",
            "BodyPartExamined",
            "RetrieveAETitle",
        } - {"RetrieveAETitle"}
        assert answer.NumberOfSeriesRelatedInstances == 1
        assert answer.BodyPartExamined == ""


def test_invalid_identifier_gets_a_failure_status(loaded: ServerProcess) -> None:
    ds = Dataset()
    ds.PatientName = "X"  # no Query/Retrieve Level
    assert c_find(loaded.dicom_port, ds).statuses == [0xA900]
    ds.QueryRetrieveLevel = "PATIENT"  # not in the Study Root model
    assert c_find(loaded.dicom_port, ds).statuses == [0xA900]


def test_c_cancel_stops_a_running_query(loaded: ServerProcess) -> None:
    import random

    from openpacs.dimse.identifiers import encode_identifier
    from openpacs.services.outbound import dataset_offset

    # a study of 400 instances, so that the query is still running when the cancel arrives
    root = f"1.2.826.0.1.3680043.10.1151.8.{random.randrange(10**8)}"
    study_uid, series_uid = f"{root}.1", f"{root}.2"
    template = pydicom.dcmread(io.BytesIO(instances()[0][1]))
    ct = "1.2.840.10008.5.1.4.1.1.2"
    store = request(
        "127.0.0.1",
        loaded.dicom_port,
        calling_ae="LOADER",
        called_ae="OPENPACS",
        contexts=[(ct, ("1.2.840.10008.1.2.1",))],
        max_pdu=65536,
        timeout=10,
    )
    (store_context,) = store.contexts.values()
    for n in range(400):
        sop_uid = f"{series_uid}.{n + 1}"
        ds = template.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, series_uid, sop_uid
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        raw = buffer.getvalue()
        store.send(
            store_context.id,
            {
                "CommandField": cmd.C_STORE_RQ,
                "MessageID": n + 1,
                "Priority": 0,
                "AffectedSOPClassUID": ct,
                "AffectedSOPInstanceUID": sop_uid,
            },
            raw[dataset_offset(raw) :],
        )
        assert store.receive().command["Status"] == 0
    store.release()

    assoc = request(
        "127.0.0.1",
        loaded.dicom_port,
        calling_ae="CANCELSCU",
        called_ae="OPENPACS",
        contexts=[(str(StudyRootQueryRetrieveInformationModelFind), ("1.2.840.10008.1.2.1",))],
        max_pdu=65536,
        timeout=10,
    )
    identifier = encode_identifier(
        {
            "00080052": {"vr": "CS", "Value": ["IMAGE"]},
            "0020000D": {"vr": "UI", "Value": [study_uid]},
            "0020000E": {"vr": "UI", "Value": [series_uid]},
            "00080018": {"vr": "UI"},
        },
        "1.2.840.10008.1.2.1",
        [],
    )
    context = next(iter(assoc.contexts.values()))
    try:
        assoc.send(
            context.id,
            {
                "CommandField": cmd.C_FIND_RQ,
                "MessageID": 7,
                "Priority": 0,
                "AffectedSOPClassUID": str(StudyRootQueryRetrieveInformationModelFind),
            },
            identifier,
        )
        # the cancel follows at once: the server sees it between two answers, however loaded the
        # machine is (waiting for the first answer first let a fast server finish all 400)
        assoc.send(context.id, {"CommandField": cmd.C_CANCEL_RQ, "MessageIDBeingRespondedTo": 7})
        statuses = [assoc.receive().command["Status"]]
        while statuses[-1] == 0xFF00:
            statuses.append(assoc.receive().command["Status"])
        assert statuses[-1] == 0xFE00
        assert len(statuses) < 400  # it stopped early
    finally:
        assoc.release()


def _add_destination(server: ServerProcess, scp: StoreScp, name: str = "dest") -> None:
    server.cli(
        "node", "add", name, "--ae-title", scp.ae_title, "--host", "127.0.0.1", "--port", str(scp.port), check=False
    )


def test_movescu_to_a_node_added_while_running(loaded: ServerProcess, storescp: StoreScp) -> None:
    study = next(c for c in CASES if c.name == "uid list").keys["StudyInstanceUID"].split("\\")[1]  # S3: two series
    args = [
        "movescu",
        "-v",
        "-S",
        "-aet",
        "MOVESCU",
        "-aec",
        "OPENPACS",
        "-aem",
        "DEST",
        "127.0.0.1",
        str(loaded.dicom_port),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study}",
    ]
    # the calling AE is no node: C-MOVE needs one (0124, Refused: Not Authorized)
    output = run_dcmtk(*args).stderr
    assert "0x124" in output.lower(), output
    loaded.cli("node", "add", "ws", "--ae-title", "MOVESCU", "--host", "127.0.0.1", "--port", "104", check=False)
    # the destination is unknown: A801
    output = run_dcmtk(*args).stderr
    assert "Refused: MoveDestinationUnknown" in output, output
    _add_destination(loaded, storescp)
    output = run_dcmtk(*args).stderr
    assert "Received Final Move Response (Success)" in output, output
    files = storescp.wait_for(2)
    assert len(files) == 2
    sent = dict(instances())
    for path in files:
        received = pydicom.dcmread(path)
        original = pydicom.dcmread(io.BytesIO(sent[received.SOPInstanceUID]))
        for element in original:
            assert received[element.tag].value == element.value, element.keyword
        assert received.PixelData == original.PixelData


def test_move_to_an_unreachable_destination_fails_its_sub_operations(loaded: ServerProcess, tmp_path: Path) -> None:
    loaded.cli("node", "add", "ghost", "--ae-title", "GHOST", "--host", "127.0.0.1", "--port", "9", check=False)
    loaded.cli("node", "add", "ws2", "--ae-title", "MOVESCU2", "--host", "127.0.0.1", "--port", "104", check=False)
    study = next(c for c in CASES if c.name == "uid list").keys["StudyInstanceUID"].split("\\")[0]
    output = run_dcmtk(
        "movescu",
        "-v",
        "-S",
        "-aet",
        "MOVESCU2",
        "-aec",
        "OPENPACS",
        "-aem",
        "GHOST",
        "127.0.0.1",
        str(loaded.dicom_port),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study}",
    ).stderr
    assert "a702" in output.lower() or "OutOfResourcesSubOperations" in output, output
    assert "connection refused" in loaded.wait_for_log("connection refused")


def test_getscu_retrieves_a_study(loaded: ServerProcess, tmp_path: Path) -> None:
    study = next(c for c in CASES if c.name == "uid list").keys["StudyInstanceUID"].split("\\")[1]
    result = run_dcmtk(
        "getscu",
        "-v",
        "-S",
        "-aec",
        "OPENPACS",
        "-od",
        str(tmp_path),
        "127.0.0.1",
        str(loaded.dicom_port),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study}",
    )
    output = result.stdout + result.stderr
    assert "Received C-GET Response (Success)" in output, output
    assert "Number of Completed Suboperations : 2" in output
    files = [p for p in tmp_path.iterdir() if p.is_file()]
    assert len(files) == 2
    assert {pydicom.dcmread(p).StudyInstanceUID for p in files} == {study}


def test_retrieve_ae_title_and_availability_are_filled(loaded: ServerProcess) -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = "PID2"
    ds.StudyInstanceUID = ""
    ds.RetrieveAETitle = ""
    ds.InstanceAvailability = ""
    (answer,) = c_find(loaded.dicom_port, ds).answers
    assert answer.RetrieveAETitle == "OPENPACS"
    assert answer.InstanceAvailability == "ONLINE"
