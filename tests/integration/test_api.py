"""The admin REST API under /api: browsing with filters and paging, statistics, nodes,
delete, system information, the change feed, users, and the audit of read accesses."""

from __future__ import annotations

import time

import pytest

from conftest import ServerProcess, StoreScp, run_dcmtk
from matching_table import STUDIES, instances, uid
from web import accounts_of, dicomweb, http

pytestmark = pytest.mark.usefixtures("dcmtk")


@pytest.fixture(scope="module")
def loaded(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    folder = tmp_path_factory.mktemp("api-table")
    for sop, data in instances():
        (folder / f"{sop}.dcm").write_bytes(data)
    result = run_dcmtk("storescu", "-aec", "OPENPACS", "+sd", "127.0.0.1", str(server.dicom_port), str(folder))
    assert result.returncode == 0, result.stderr
    return server


def test_browse_patients_studies_series_instances(loaded: ServerProcess) -> None:
    with http(loaded, accounts_of(loaded)["radiologist"]) as client:
        patients = client.get("/api/patients", params={"patient_name": "DOE*"}).json()
        assert sorted(p["patient_id"] for p in patients) == ["PID1", "PID2"]
        studies = client.get("/api/studies", params={"patient_id": "PID1"}).json()
        assert len(studies) == 2
        first = next(s for s in studies if s["study_instance_uid"] == uid("S1"))
        assert first["patient_name"] == "Doe^John"
        assert first["modalities_in_study"] == ["CT"]
        assert first["viewer_url"] == f"{loaded.base_url}/viewer/viewer?StudyInstanceUIDs={uid('S1')}"
        series = client.get(f"/api/studies/{uid('S3')}/series").json()
        assert sorted(s["modality"] for s in series) == ["CT", "MR"]
        mr = next(s for s in series if s["modality"] == "MR")
        (instance,) = client.get(f"/api/series/{mr['series_instance_uid']}/instances").json()
        assert instance["sop_instance_uid"] == f"{uid('S3')}.2.1"


def test_filters_use_the_c_find_matching(loaded: ServerProcess) -> None:
    with http(loaded, accounts_of(loaded)["viewer"]) as client:
        by_date = client.get("/api/studies", params={"study_date": "20240101-20240131"}).json()
        assert {s["study_id"] for s in by_date} == {"S1", "S4", "S6"}
        by_modality = client.get("/api/studies", params={"modality": "MR"}).json()
        assert {s["study_id"] for s in by_modality} == {"S2", "S3"}
        described = client.get("/api/studies", params={"study_description": "*CHEST*"}).json()
        assert {s["study_id"] for s in described} == {"S3", "S6"}


def test_paging(loaded: ServerProcess) -> None:
    with http(loaded, accounts_of(loaded)["viewer"]) as client:
        everything = client.get("/api/studies").json()
        assert len(everything) == len(STUDIES)
        first = client.get("/api/studies", params={"limit": 4}).json()
        rest = client.get("/api/studies", params={"limit": 4, "offset": 4}).json()
        assert [s["study_instance_uid"] for s in first + rest] == [s["study_instance_uid"] for s in everything]
        assert client.get("/api/studies", params={"limit": 0}).status_code == 400
        assert client.get("/api/studies", params={"limit": 5000}).status_code == 400


def test_statistics_and_system(loaded: ServerProcess) -> None:
    accounts = accounts_of(loaded)
    with http(loaded, accounts["viewer"]) as client:
        stats = client.get("/api/stats").json()
    assert stats["studies"] >= len(STUDIES)
    assert stats["instances"] >= len(instances())
    assert stats["bytes"] > 0
    with http(loaded, accounts["admin"]) as client:
        system = client.get("/api/system").json()
    assert system["ae_title"] == "OPENPACS"
    assert system["dicom_port"] == loaded.dicom_port
    assert system["database"] in ("sqlite", "postgresql")


def test_nodes_crud_and_echo(loaded: ServerProcess, storescp: StoreScp) -> None:
    admin = accounts_of(loaded)["admin"]
    node = {"name": "api-dest", "ae_title": storescp.ae_title, "host": "127.0.0.1", "port": storescp.port}
    with http(loaded, admin) as client:
        created = client.post("/api/nodes", json=node)
        assert created.status_code == 201
        assert created.json()["allow_store"] is True
        assert client.post("/api/nodes", json=node).status_code == 409
        assert client.get("/api/nodes/api-dest").json()["port"] == storescp.port
        echo = client.post("/api/nodes/api-dest/echo").json()
        assert echo == {"success": True, "address": f"{storescp.ae_title}@127.0.0.1:{storescp.port}", "reason": ""}
        changed = client.put("/api/nodes/api-dest", json={**node, "port": 9, "allow_find": False})
        assert changed.status_code == 200
        assert changed.json()["allow_find"] is False
        failed = client.post("/api/nodes/api-dest/echo").json()
        assert failed["success"] is False
        assert "refused" in failed["reason"]
        bad = client.post("/api/nodes", json={**node, "name": "bad", "ae_title": "A\\B"})
        assert bad.status_code == 409
        assert "AE title" in bad.json()["error"]
        assert client.delete("/api/nodes/api-dest").status_code == 204
        assert client.get("/api/nodes/api-dest").status_code == 404
        assert client.delete("/api/nodes/api-dest").status_code == 404


def test_delete_is_admin_only_and_reaches_every_door(loaded: ServerProcess) -> None:
    accounts = accounts_of(loaded)
    study = uid("S6")
    with http(loaded, accounts["radiologist"]) as client:
        refused = client.delete(f"/api/studies/{study}")
        assert refused.status_code == 403
    with http(loaded, accounts["admin"]) as client:
        deleted = client.delete(f"/api/studies/{study}", params={"reason": "test of delete"})
        assert deleted.status_code == 200
        assert deleted.json() == {"studies": 1, "series": 1, "instances": 1}
        assert client.delete(f"/api/studies/{study}").status_code == 404
    assert dicomweb(loaded, accounts["viewer"]).search_for_studies(search_filters={"StudyInstanceUID": study}) == []


def test_change_feed_is_resumable_and_in_commit_order(loaded: ServerProcess) -> None:
    integration = accounts_of(loaded)["integration"]
    with http(loaded, integration) as client:
        seen: list[dict] = []
        since = 0
        while True:
            page = client.get("/api/changes", params={"since": since, "limit": 3}).json()
            seen.extend(page["changes"])
            since = page["last"]
            if page["done"]:
                break
        assert [c["seq"] for c in seen] == sorted(c["seq"] for c in seen)
        assert len({c["seq"] for c in seen}) == len(seen)
        stored = {c["resource"] for c in seen if c["change_type"] == "instance_stored"}
        assert {sop for sop, _ in instances()} <= stored
        again = client.get("/api/changes", params={"since": since}).json()
        assert again == {"changes": [], "last": since, "done": True}


def test_reads_through_dicomweb_and_the_api_are_audited(loaded: ServerProcess) -> None:
    accounts = accounts_of(loaded)
    reader = accounts["radiologist"]
    client = dicomweb(loaded, reader)
    client.search_for_studies(search_filters={"PatientID": "PID2"})
    client.retrieve_study_metadata(uid("S3"))
    with http(loaded, reader) as api:
        api.get("/api/studies", params={"patient_id": "PID4"})
    # a read's audit record is written by the next index transaction, just after the answer
    deadline = time.monotonic() + 10
    while True:
        with http(loaded, accounts["admin"]) as admin:
            entries: list[dict] = []
            since = 0
            while page := admin.get("/api/audit", params={"since": since, "limit": 1000}).json():
                entries.extend(page)
                since = page[-1]["pk"]
        mine = [e for e in entries if e["actor_type"] == "user" and e["actor_id"] == reader.name]
        actions = {e["action"] for e in mine}
        if {"query", "wado-metadata"} <= actions or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert {"query", "wado-metadata"} <= actions, actions
    assert all(e["actor_address"] == "127.0.0.1" for e in mine)


def test_users_api(loaded: ServerProcess) -> None:
    admin = accounts_of(loaded)["admin"]
    with http(loaded, admin) as client:
        created = client.post("/api/users", json={"name": "api-user", "role": "viewer"})
        assert created.status_code == 201
        password = created.json()["password"]
        assert password and created.json()["user"]["must_change_password"] is True
        assert client.post("/api/users", json={"name": "api-user", "role": "viewer"}).status_code == 409
        token = client.post("/api/users/api-user/tokens", json={"label": "x"}).json()["token"]
        assert token.startswith("opt_")
        assert "api-user" in [u["name"] for u in client.get("/api/users").json()]
        assert client.put("/api/users/api-user/password", json={"password": "short"}).status_code == 400
        assert client.put("/api/users/api-user/password", json={"password": "long enough"}).status_code == 204
    with http(loaded, headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get("/api/me").json()["name"] == "api-user"
    with http(loaded, admin) as client:
        assert client.delete("/api/users/api-user").status_code == 204
    with http(loaded, headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get("/api/me").status_code == 401  # the token went with its user
