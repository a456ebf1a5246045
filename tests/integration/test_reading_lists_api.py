"""Reading worklists through REST against a running server, as two radiologists: one claims a
study, the other sees who reads it and is refused (409) with that name; saved filters and
unread counts; a shared filter needs an administrator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ServerProcess, server_on, store_ct
from openpacs import bootstrap
from openpacs.domain.records import Actor
from openpacs.domain.users import Role
from openpacs.settings import load_settings
from web import Account, accounts_of, http

pytestmark = pytest.mark.usefixtures("dcmtk")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from server_on("sqlite", tmp_path_factory)


@pytest.fixture(scope="module")
def radiologists(server: ServerProcess) -> tuple[Account, Account]:
    settings = load_settings(None, data_dir=server.data_dir, database_url=server.database_url)
    app = bootstrap.build(settings)
    made = []
    try:
        for name in ("dr-anna", "dr-bob"):
            app.users.create(name, Role.RADIOLOGIST, Actor.system("tests"), f"pw-{name}-123456")
            token = app.users.create_token(name, Actor.system("tests"), "tests")
            made.append(Account(name, "radiologist", f"pw-{name}-123456", token))
    finally:
        app.close()
    return made[0], made[1]


def test_two_radiologists_one_study(
    server: ServerProcess, radiologists: tuple[Account, Account], tmp_path: Path
) -> None:
    anna, bob = radiologists
    study = store_ct(server, tmp_path, "READ1", "Reading^Test", accession="RD1")
    with http(server, anna) as a, http(server, bob) as b:
        listed = a.get("/api/reading", params={"modalities": "CT"}).json()["studies"]
        assert [s["study_instance_uid"] for s in listed] == [study]
        assert listed[0]["status"] == "completed" and listed[0]["claimed_by"] is None  # unscheduled: completed
        assert a.get("/api/reading/counts").json()["unread"] == 1
        assert a.post(f"/api/reading/{study}/claim").json()["claimed_by"] == "dr-anna"
        seen = b.get("/api/reading").json()["studies"]
        assert seen[0]["claimed_by"] == "dr-anna"
        refused = b.post(f"/api/reading/{study}/claim")
        assert refused.status_code == 409 and "dr-anna" in refused.text
        assert b.post(f"/api/reading/{study}/release").status_code == 409
        assert b.get("/api/reading", params={"unclaimed": "true"}).json()["studies"] == []
        assert a.post(f"/api/reading/{study}/release").status_code == 200
        assert b.post(f"/api/reading/{study}/claim").status_code == 200
        assert b.post("/api/reading/1.2.3.999/claim").status_code == 404
        # saved filters: one's own; a shared one only for administrators
        saved = a.put("/api/reading/filters/my-ct", json={"criteria": {"modalities": ["CT"]}})
        assert saved.status_code == 200 and saved.json()["owner"] == "dr-anna"
        assert a.put("/api/reading/filters/all", json={"criteria": {}, "shared": True}).status_code == 403
        assert a.put("/api/reading/filters/bad", json={"criteria": {"statuses": ["read"]}}).status_code == 400
        assert a.get("/api/reading", params={"filter": "my-ct"}).json()["studies"][0]["study_instance_uid"] == study
        assert b.get("/api/reading", params={"filter": "my-ct"}).status_code == 404
        assert a.get("/api/reading/counts").json()["filters"] == {"my-ct": 1}
    with http(server, accounts_of(server)["admin"]) as admin:
        assert (
            admin.put(
                "/api/reading/filters/stat", json={"criteria": {"priorities": ["STAT"]}, "shared": True}
            ).status_code
            == 200
        )
    with http(server, bob) as b:
        assert [f["name"] for f in b.get("/api/reading/filters").json()] == ["stat"]
        assert b.get("/api/reading/filters/stat").json()["shared"] is True
        assert b.get("/api/reading/filters/my-ct").status_code == 404
        assert b.delete("/api/reading/filters/stat", params={"shared": "true"}).status_code == 403
    with http(server, anna) as a:
        assert a.get("/api/reading/filters/my-ct").json()["criteria"] == {"modalities": ["CT"]}
        assert a.delete("/api/reading/filters/my-ct").status_code == 204
        assert a.get("/api/reading/filters/my-ct").status_code == 404
    with http(server, accounts_of(server)["technologist"]) as tech:
        assert tech.get("/api/reading").status_code == 403


def test_the_reading_commands(server: ServerProcess, radiologists: tuple[Account, Account], tmp_path: Path) -> None:
    """`openpacs reading` on the server's database: the same claims the REST API shows."""
    anna, bob = radiologists
    study = store_ct(server, tmp_path, "READ2", "Reading^Cli", accession="RD2")
    assert "dr-bob" in server.cli("reading", "claim", study, "--as", "dr-bob").stdout
    refused = server.cli("reading", "claim", study, "--as", "dr-anna", check=False)
    assert refused.returncode == 1 and "dr-bob is reading this study" in refused.stderr
    with http(server, anna) as a:
        claimed = [s for s in a.get("/api/reading").json()["studies"] if s["study_instance_uid"] == study]
        assert claimed[0]["claimed_by"] == "dr-bob"
        assert a.post(f"/api/reading/{study}/claim").status_code == 409
    mine = json.loads(server.cli("reading", "list", "--mine", "--as", "dr-bob", "--json").stdout)
    assert study in [s["study_instance_uid"] for s in mine] and all(s["claimed_by"] == "dr-bob" for s in mine)
    assert "RD2" in server.cli("reading", "list", "--modalities", "CT", "--max-age-minutes", "60").stdout
    server.cli("reading", "save-filter", "cli-ct", '{"modalities": ["CT"]}', "--as", "dr-bob")
    assert "cli-ct" in json.loads(server.cli("reading", "counts", "--as", "dr-bob").stdout)["filters"]
    bad = server.cli("reading", "save-filter", "bad", '{"statuses": ["read"]}', check=False)
    assert bad.returncode == 1 and "statuses" in bad.stderr
    server.cli("reading", "delete-filter", "cli-ct", "--as", "dr-bob")
    assert server.cli("reading", "filters", "--as", "dr-bob", "--json").stdout.count("cli-ct") == 0
    assert server.cli("reading", "release", study, "--as", "dr-anna", check=False).returncode == 1
    server.cli("reading", "release", study, "--as", "dr-bob")
    with http(server, bob) as b:
        assert b.post(f"/api/reading/{study}/release").status_code == 404
