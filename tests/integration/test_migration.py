"""Migration from an old PACS (Debian's Orthanc, loaded with a generated corpus) by C-MOVE and
by C-GET, with a verification report; a time window that excludes now keeps a migration
waiting; a folder tree imported as a migration, with the files that could not be imported
listed and a study missing an instance reported as a mismatch."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from conftest import ServerProcess, run_dcmtk, start_server
from corpus import generate
from peers import Orthanc, start_orthanc
from web import accounts_of

pytestmark = pytest.mark.usefixtures("dcmtk")


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(
        tmp_path / "ours",
        f"sqlite:///{tmp_path / 'ours.sqlite3'}",
        extra_env={
            "OPENPACS_ROUTING__RETRY_BASE_SECONDS": "0.2",
            "OPENPACS_ROUTING__RETRY_MAX_SECONDS": "1",
            # the generated instances are 3 kB: a test makes one bigger than this to have it refused
            "OPENPACS_DICOM__MAX_INSTANCE_BYTES": "200000",
        },
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def orthanc(tmp_path: Path, ours: ServerProcess) -> Iterator[Orthanc]:
    peer = start_orthanc(tmp_path / "orthanc", {"openpacs": ["OPENPACS", "127.0.0.1", ours.dicom_port]})
    try:
        ours.cli("node", "add", "orthanc", "--ae-title", "ORTHANC", "--host", "127.0.0.1", "--port", str(peer.port))
        yield peer
    finally:
        peer.stop()


def _load(orthanc: Orthanc, paths: list[Path]) -> None:
    run_dcmtk("storescu", "-aec", "ORTHANC", "127.0.0.1", str(orthanc.port), *map(str, paths))


def _http(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=30, headers=accounts_of(server)["admin"].bearer)


def _wait_done(server: ServerProcess, job: int, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with _http(server) as http:
        while True:
            report = dict(http.get(f"/api/migrations/{job}").json())
            if report["job"]["state"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
                return report
            time.sleep(0.3)


def test_a_migration_from_orthanc_by_c_move_ends_with_zero_mismatches(
    tmp_path: Path, ours: ServerProcess, orthanc: Orthanc
) -> None:
    # three studies (2026-02-02, 2026-03-03, 2026-04-04) of 8 instances each
    paths = generate("small", tmp_path / "corpus", 24, seed=31, per_series=4)
    _load(orthanc, paths)
    dates = sorted({str(pydicom.dcmread(p, stop_before_pixels=True).StudyDate) for p in paths})
    assert dates == ["20260202", "20260303", "20260404"]
    started = json.loads(
        ours.cli("migrate", "from-node", "orthanc", "--since", "20260201", "--until", "20260331", "--json").stdout
    )
    report = _wait_done(ours, started["id"])
    assert report["job"]["state"] == "done", report
    counts = report["counts"]
    assert (counts["verified"], counts["mismatch"], counts["failed"]) == (2, 0, 0), counts
    assert counts["instances_there"] == counts["instances_here"] == 16
    assert {s["study_date"] for s in report["studies"]} == {"20260202", "20260303"}  # April is out of range
    assert all(s["there"] == s["here"] == {"series": 2, "instances": 8} for s in report["studies"])
    assert json.loads(ours.cli("stats", "--json").stdout)["instances"] == 16

    shown = ours.cli("migrate", "report", str(started["id"])).stdout
    assert "2 verified, 0 mismatches" in shown and "16 there, 16 here" in shown
    status = ours.cli("migrate", "status", str(started["id"])).stdout
    assert "phase done" in status and "verified: 2 studies match, 0 mismatches" in status

    # a second migration of the whole archive asks only for what is missing, and verifies it all
    again = _wait_done(ours, json.loads(ours.cli("migrate", "from-node", "orthanc", "--json").stdout)["id"])
    assert again["counts"]["verified"] == 3 and again["counts"]["mismatch"] == 0, again["counts"]
    already = [s for s in again["studies"] if s["detail"].get("already_here")]
    assert len(already) == 2


def test_a_migration_by_c_get_and_a_refused_instance_listed_as_missing(
    tmp_path: Path, ours: ServerProcess, orthanc: Orthanc
) -> None:
    paths = generate("small", tmp_path / "corpus", 16, seed=32, per_series=4)  # two studies of 8
    _load(orthanc, paths)
    # our archive refuses instances over a size: the first study gets one too big for it
    ds = pydicom.dcmread(generate("small", tmp_path / "extra", 1, seed=33, per_series=4)[0])
    ds.StudyInstanceUID = pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID
    ds.add_new(0x00091010, "OB", b"\0" * 300_000)
    ds.save_as(tmp_path / "extra-big.dcm", enforce_file_format=True)
    _load(orthanc, [tmp_path / "extra-big.dcm"])  # the first study now holds 9 instances
    with _http(ours) as http:
        response = http.post("/api/migrations/from-node", json={"node": "orthanc", "via": "get"})
        assert response.status_code == 202, response.text
        job = response.json()["id"]
        bad = http.post("/api/migrations/from-node", json={"node": "orthanc", "via": "telepathy"})
        assert bad.status_code == 400 and "via" in bad.text
        unknown = http.post("/api/migrations/from-node", json={"node": "nowhere"})
        assert unknown.status_code == 404 and "nowhere" in unknown.text
        backwards = http.post(
            "/api/migrations/from-node", json={"node": "orthanc", "since": "20260301", "until": "2026-01-01"}
        )
        assert backwards.status_code == 400 and "before it starts" in backwards.text
    report = _wait_done(ours, job)
    assert report["job"]["state"] == "done", report
    counts = report["counts"]
    assert (counts["verified"], counts["mismatch"]) == (1, 1), counts
    (mismatch,) = [s for s in report["studies"] if s["state"] == "mismatch"]
    assert mismatch["there"]["instances"] == 9 and mismatch["here"]["instances"] == 8
    assert mismatch["detail"]["missing"] == [str(ds.SOPInstanceUID)]
    assert mismatch["detail"]["counts"]["failed"] == 1
    listed = ours.cli("migrate", "report", str(job), "--mismatches", "--json").stdout
    assert [s["state"] for s in json.loads(listed)["studies"]] == ["mismatch"]


def test_a_window_that_excludes_now_keeps_the_migration_waiting(
    tmp_path: Path, ours: ServerProcess, orthanc: Orthanc
) -> None:
    _load(orthanc, generate("small", tmp_path / "corpus", 4, seed=34, per_series=2))
    now = datetime.now().astimezone()
    opens, closes = now + timedelta(hours=2), now + timedelta(hours=3)
    window = f"{opens:%H:%M}-{closes:%H:%M}"
    started = ours.cli("migrate", "from-node", "orthanc", "--window", window, "--rate", "50").stdout
    job = int(started.split()[1].rstrip(":"))
    assert f"only in {window}" in started and "at most 50 instances/s" in started
    deadline = time.monotonic() + 30
    shown: dict[str, Any] = {}
    with _http(ours) as http:
        while time.monotonic() < deadline:
            shown = http.get(f"/api/migrations/{job}").json()
            if shown["job"]["progress"].get("waiting_until"):
                break
            time.sleep(0.2)
        time.sleep(1.5)  # the worker polls again: still waiting
        shown = http.get(f"/api/migrations/{job}").json()
    assert shown["job"]["state"] == "pending", shown
    waiting = datetime.fromisoformat(shown["job"]["progress"]["waiting_until"])
    assert abs((waiting - opens.replace(second=0, microsecond=0)).total_seconds()) < 60
    assert json.loads(ours.cli("stats", "--json").stdout)["instances"] == 0
    assert "paused outside the allowed windows until" in ours.cli("migrate", "status", str(job)).stdout
    bad = ours.cli("migrate", "from-node", "orthanc", "--window", "Someday 25:00-26:00", check=False)
    assert bad.returncode == 1 and "days are Mon" in bad.stderr
    assert "job" in ours.cli("jobs", "cancel", str(job)).stdout


def test_a_folder_migration_lists_bad_files_and_verifies_each_study(tmp_path: Path, ours: ServerProcess) -> None:
    folder = tmp_path / "old-archive"
    paths = generate("small", folder / "a", 16, seed=35, per_series=4)
    (folder / "b").mkdir()
    (folder / "b" / "README.txt").write_text("not DICOM")
    truncated = folder / "b" / "truncated.dcm"
    truncated.write_bytes(paths[0].read_bytes()[:300])
    # a file of the second study our archive refuses (too deep a sequence nesting): it is missing here
    refused = pydicom.dcmread(paths[-1])
    refused.SOPInstanceUID = refused.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    inner = pydicom.Dataset()
    for _ in range(40):
        outer = pydicom.Dataset()
        outer.ReferencedSeriesSequence = [inner]
        inner = outer
    refused.ReferencedSeriesSequence = [inner]
    refused.save_as(folder / "b" / "deep.dcm", enforce_file_format=True)
    with _http(ours) as http:
        response = http.post("/api/migrations/from-folder", json={"path": str(folder), "rate": 200})
        assert response.status_code == 202, response.text
        job = response.json()["id"]
        missing_folder = http.post("/api/migrations/from-folder", json={"path": str(tmp_path / "nowhere")})
        assert missing_folder.status_code == 400 and "not a folder" in missing_folder.text
    report = _wait_done(ours, job)
    progress, counts = report["job"]["progress"], report["counts"]
    assert report["job"]["state"] == "done", report
    assert progress["files"] == 19 and progress["outcomes"] == {"imported": 16, "skipped": 1, "rejected": 2}
    assert {f.split(":", 1)[0] for f in progress["failed_files"]} == {str(truncated), str(folder / "b" / "deep.dcm")}
    assert (counts["verified"], counts["mismatch"]) == (1, 1), counts
    (mismatch,) = [s for s in report["studies"] if s["state"] == "mismatch"]
    assert mismatch["there"]["instances"] == 9 and mismatch["here"]["instances"] == 8
    assert mismatch["detail"]["missing"] == [
        {"sop_instance_uid": str(refused.SOPInstanceUID), "file": str(folder / "b" / "deep.dcm")}
    ]


def test_a_migration_stopped_by_a_restart_resumes_where_it_was(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'resume.sqlite3'}"
    first = start_server(tmp_path / "resume", database)
    orthanc = start_orthanc(tmp_path / "orthanc", {})
    try:
        _load(orthanc, generate("small", tmp_path / "corpus", 12, seed=36, per_series=2))  # 3 studies of 4
        first.cli("node", "add", "orthanc", "--ae-title", "ORTHANC", "--host", "127.0.0.1",
                  "--port", str(orthanc.port))  # fmt: skip
        job = json.loads(first.cli("migrate", "from-node", "orthanc", "--via", "get", "--rate", "3", "--json").stdout)
        deadline = time.monotonic() + 30
        with _http(first) as http:
            while time.monotonic() < deadline:
                counts = http.get(f"/api/migrations/{job['id']}").json()["counts"]
                if counts["transferred"] >= 1:
                    break
                time.sleep(0.1)
        assert counts["transferred"] in (1, 2), counts  # stopped in the middle (3 instances a second)
        assert first.stop() == 0
        again = start_server(first.data_dir, database)
        try:
            report = _wait_done(again, job["id"])
            counts = report["counts"]
            assert report["job"]["state"] == "done", report["job"]
            assert (counts["verified"], counts["mismatch"], counts["instances_here"]) == (3, 0, 12), counts
        finally:
            again.stop()
    finally:
        first.stop()
        orthanc.stop()
