"""QIDO-RS (PS3.18 10.6) with dicomweb-client: the C-FIND matching table through QIDO, the
nested resources, includefield, limit/offset, fuzzy matching, keys as keywords or tags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ServerProcess, run_dcmtk
from matching_table import CASES, STUDIES, Case, instances, series_key, study_key, uid
from web import Account, accounts_of, dicomweb, http

pytestmark = pytest.mark.usefixtures("dcmtk")
QIDO_CASES = [c for c in CASES if c.level != "PATIENT"]  # QIDO-RS has no patient resource


@pytest.fixture(scope="module")
def loaded(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """The matching table's studies, sent by C-STORE with DCMTK's storescu (a cross-door test)."""
    folder = tmp_path_factory.mktemp("qido-table")
    for sop, data in instances():
        (folder / f"{sop}.dcm").write_bytes(data)
    result = run_dcmtk("storescu", "-aec", "OPENPACS", "+sd", "127.0.0.1", str(server.dicom_port), str(folder))
    assert result.returncode == 0, result.stderr
    return server


@pytest.fixture(scope="module")
def reader(loaded: ServerProcess) -> Account:
    return accounts_of(loaded)["radiologist"]


def _value(answer: dict, tag: str) -> object:
    values = answer.get(tag, {}).get("Value") or [None]
    return values[0]


@pytest.mark.parametrize("case", QIDO_CASES, ids=lambda c: c.name)
def test_matching_table_through_qido(loaded: ServerProcess, reader: Account, case: Case) -> None:
    client = dicomweb(loaded, reader)
    if case.level == "STUDY":
        answers = client.search_for_studies(search_filters=case.keys)
        found = {study_key(str(_value(a, "0020000D"))) for a in answers}
    else:
        answers = client.search_for_series(search_filters=case.keys)
        found = {series_key(str(_value(a, "0020000E"))) for a in answers}
    assert found == case.expected


def test_answers_are_dicom_json_with_a_retrieve_url(loaded: ServerProcess, reader: Account) -> None:
    with http(loaded, reader) as client:
        response = client.get("/dicom-web/studies", params={"PatientID": "PID1"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    answers = response.json()
    assert len(answers) == 2
    for answer in answers:
        study = _value(answer, "0020000D")
        assert answer["00081190"]["Value"][0] == f"{loaded.base_url}/dicom-web/studies/{study}"
        assert answer["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}
        assert answer["00201208"]["Value"] == [1]  # NumberOfStudyRelatedInstances
        assert "00080052" not in answer  # QueryRetrieveLevel is C-FIND's, not QIDO's


def test_nested_resources(loaded: ServerProcess, reader: Account) -> None:
    client = dicomweb(loaded, reader)
    s3 = uid("S3")
    series = client.search_for_series(study_instance_uid=s3)
    assert sorted(_value(s, "00080060") for s in series) == ["CT", "MR"]
    mr = next(s for s in series if _value(s, "00080060") == "MR")
    found = client.search_for_instances(study_instance_uid=s3, series_instance_uid=str(_value(mr, "0020000E")))
    assert [_value(i, "00080018") for i in found] == [f"{s3}.2.1"]
    assert len(client.search_for_instances(study_instance_uid=s3)) == 2
    everything = client.search_for_instances()
    assert len(everything) == len(instances())


def test_keys_as_keywords_or_tags_give_the_same_answers(loaded: ServerProcess, reader: Account) -> None:
    with http(loaded, reader) as client:
        by_keyword = client.get("/dicom-web/studies", params={"PatientName": "DOE*"}).json()
        by_tag = client.get("/dicom-web/studies", params={"00100010": "DOE*"}).json()
    assert by_keyword == by_tag
    assert len(by_keyword) == 3


def test_uid_lists_with_commas_or_backslashes(loaded: ServerProcess, reader: Account) -> None:
    with http(loaded, reader) as client:
        commas = client.get("/dicom-web/studies", params={"StudyInstanceUID": f"{uid('S1')},{uid('S3')}"}).json()
        backslash = client.get("/dicom-web/studies", params={"StudyInstanceUID": f"{uid('S1')}\\{uid('S3')}"}).json()
    assert {study_key(str(_value(a, "0020000D"))) for a in commas} == {"S1", "S3"}
    assert commas == backslash


def test_includefield(loaded: ServerProcess, reader: Account) -> None:
    client = dicomweb(loaded, reader)
    plain = client.search_for_studies(search_filters={"PatientID": "PID2"})
    assert "00081030" in plain[0]  # StudyDescription is returned by default
    assert "00100030" in plain[0]
    assert "00200010" in plain[0]
    with_field = client.search_for_series(
        search_filters={"PatientID": "PID2"}, fields=["SeriesDescription", "00200011"]
    )
    assert all("0008103E" in s and "00200011" in s for s in with_field)
    every = client.search_for_instances(study_instance_uid=uid("S3"), fields=["all"])
    # "all" returns every attribute the index holds for the instance, e.g. the image pixel module
    assert all(_value(i, "00280101") == 12 for i in every)  # BitsStored is not a default key


def test_limit_and_offset_page_through_the_answers(loaded: ServerProcess, reader: Account) -> None:
    client = dicomweb(loaded, reader)
    everything = client.search_for_studies()
    assert len(everything) == len(STUDIES)
    pages = [client.search_for_studies(limit=4, offset=0), client.search_for_studies(limit=4, offset=4)]
    assert [len(p) for p in pages] == [4, 2]
    paged = {_value(a, "0020000D") for page in pages for a in page}
    assert paged == {_value(a, "0020000D") for a in everything}
    assert client.search_for_studies(offset=100) == []


def test_fuzzy_matching_of_person_names(loaded: ServerProcess, reader: Account) -> None:
    client = dicomweb(loaded, reader)
    assert client.search_for_studies(search_filters={"PatientName": "do^jo"}) == []
    fuzzy = client.search_for_studies(search_filters={"PatientName": "do^jo"}, fuzzymatching=True)
    assert {study_key(str(_value(a, "0020000D"))) for a in fuzzy} == {"S1", "S2"}


def test_names_come_back_in_utf8(loaded: ServerProcess, reader: Account) -> None:
    client = dicomweb(loaded, reader)
    (answer,) = client.search_for_studies(search_filters={"PatientID": "PID4"})
    assert answer["00100010"]["Value"][0]["Alphabetic"] == "Ó Briain^Seán"
    (latin,) = client.search_for_studies(search_filters={"PatientName": "Müller^Jürgen"})
    assert latin["00100010"]["Value"][0]["Alphabetic"] == "Müller^Jürgen"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"limit": "ten"}, "limit must be a number"),
        ({"offset": "-1"}, "offset must not be negative"),
        ({"NoSuchAttribute": "x"}, "unknown attribute"),
        ({"StudyDate": "2024-01-01"}, "StudyDate"),
        ({"ReferencedStudySequence": "x"}, "is a sequence"),
    ],
)
def test_bad_queries_get_400_with_a_reason(
    loaded: ServerProcess, reader: Account, params: dict[str, str], reason: str
) -> None:
    with http(loaded, reader) as client:
        response = client.get("/dicom-web/studies", params=params)
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_qido_refuses_media_types_it_cannot_answer_in(loaded: ServerProcess, reader: Account) -> None:
    with http(loaded, reader) as client:
        response = client.get("/dicom-web/studies", headers={"Accept": "application/dicom+xml"})
    assert response.status_code == 406
    assert "application/dicom+json" in response.json()["error"]


def test_the_dicomweb_client_command(loaded: ServerProcess, reader: Account, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dicomweb_client"),
            "--url",
            loaded.base_url + "/dicom-web",
            "--bearer-token",
            reader.token,
            "search",
            "studies",
            "--filter",
            "PatientID=PID2",
            "--prettify",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "DOE^JANE" in result.stdout
    basic = dicomweb(loaded, reader, basic=True)
    assert json.dumps(basic.search_for_studies(search_filters={"PatientID": "PID2"}))
