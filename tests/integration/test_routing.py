"""Routing on a running server: rules by CLI and REST, forwarding to DCMTK's storescp that is
killed in the middle of a burst and to a pynetdicom SCP that refuses one instance, and an
OpenPACS restart with jobs pending."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from conftest import ServerProcess, dcmtk_tool, free_port, run_dcmtk, start_server
from corpus import generate
from web import accounts_of

pytestmark = pytest.mark.usefixtures("dcmtk")

FAST_RETRY = {
    "OPENPACS_ROUTING__RETRY_BASE_SECONDS": "0.2",
    "OPENPACS_ROUTING__RETRY_MAX_SECONDS": "1",
    "OPENPACS_ROUTING__STABLE_AFTER_SECONDS": "1",
}


class Scp:
    """DCMTK's storescp on a fixed port, that can be killed and started again."""

    def __init__(self, out: Path) -> None:
        self.port = free_port()
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [dcmtk_tool("storescp"), "-aet", "DEST", "-od", str(self.out), str(self.port)],
            env={**os.environ, "TCP_NODELAY": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def received(self) -> set[str]:
        # storescp names its files after the SOP Instance UID (prefixed by the modality)
        return {p.name.split(".", 1)[1] for p in self.out.iterdir() if p.is_file() and "." in p.name}

    def wait_for(self, count: int, timeout: float = 60) -> set[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.received()
            if len(found) >= count:
                return found
            time.sleep(0.02)
        return self.received()


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[Scp]:
    scp = Scp(tmp_path / "received")
    scp.start()
    try:
        yield scp
    finally:
        scp.kill()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The queue's PostgreSQL paths (claims, growing jobs) are covered by the burst test on both backends."""
    return f"sqlite:///{tmp_path / 'index.sqlite3'}"


def _server(tmp_path: Path, database_url: str) -> ServerProcess:
    return start_server(tmp_path / "data", database_url, extra_env=FAST_RETRY)


def _jobs(server: ServerProcess) -> dict[str, Any]:
    with httpx.Client(base_url=server.base_url, timeout=30, headers=accounts_of(server)["admin"].bearer) as http:
        return dict(http.get("/api/jobs").json())


def _job(server: ServerProcess, pk: int) -> dict[str, Any]:
    with httpx.Client(base_url=server.base_url, timeout=30, headers=accounts_of(server)["admin"].bearer) as http:
        return dict(http.get(f"/api/jobs/{pk}").json())


def test_a_destination_down_mid_burst_and_a_restart_lose_nothing(tmp_path: Path, database_url: str, scp: Scp) -> None:
    # enough instances that the destination is down well before the last of them is forwarded
    paths = generate("small", tmp_path / "corpus", 200, seed=3, per_series=40)
    expected = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}
    server = _server(tmp_path, database_url)
    try:
        server.cli("node", "add", "dest", "--ae-title", "DEST", "--host", "127.0.0.1", "--port", str(scp.port))
        server.cli("route", "add", "to-dest", "--to", "dest", "--when", "Modality=CT", "--when", "CallingAETitle=*")
        sender = subprocess.Popen(
            [dcmtk_tool("storescu"), "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), *map(str, paths)],
            env={**os.environ, "TCP_NODELAY": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        scp.wait_for(10, timeout=30)
        scp.kill()  # the destination goes down in the middle of the burst
        _, err = sender.communicate(timeout=120)
        assert sender.returncode == 0, err.decode()[-500:]
        time.sleep(1.5)
        waiting = _jobs(server)
        assert waiting["counts"].get("done", 0) < len(waiting["jobs"]) or len(scp.received()) < len(expected)
        assert any(j["last_error"] for j in waiting["jobs"])  # why they wait, in plain words
        assert server.stop() == 0  # OpenPACS stops with jobs pending
    finally:
        server.stop()
    scp.start()
    again = start_server(server.data_dir, database_url, extra_env=FAST_RETRY)
    try:
        received = scp.wait_for(len(expected), timeout=90)
        assert received == expected
        done = _jobs(again)
        assert set(done["counts"]) == {"done"}, done
        assert all(j["progress"]["parked"] == 0 for j in done["jobs"])
    finally:
        again.stop()


def test_rules_by_cli_and_rest_a_stable_rule_and_a_poison_instance(tmp_path: Path, sqlite_url: str) -> None:
    from pynetdicom import AE, evt
    from pynetdicom.presentation import AllStoragePresentationContexts

    received: dict[str, int] = {}

    def handle_store(event: Any) -> int:
        ds = event.dataset
        number = int(ds.get("InstanceNumber", 0))
        if number == 3:
            return 0xA700  # refused: out of resources (a poison instance for this destination)
        if number == 4:
            return 0x0111  # duplicate SOP instance: it holds it already
        received[str(ds.SOPInstanceUID)] = number
        return 0

    ae = AE(ae_title="POISON")
    ae.supported_contexts = AllStoragePresentationContexts
    port = free_port()
    listener = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    server = _server(tmp_path, sqlite_url)
    try:
        server.cli("node", "add", "poison", "--ae-title", "POISON", "--host", "127.0.0.1", "--port", str(port))
        missing = server.cli("route", "add", "x", "--to", "nowhere", check=False)
        assert missing.returncode == 1 and "no node named 'nowhere'" in missing.stderr
        bad = server.cli("route", "add", "x", "--to", "poison", "--when", "NoSuchKeyword=1", check=False)
        assert bad.returncode == 1 and "not a DICOM keyword" in bad.stderr
        server.cli("route", "add", "stable-mr", "--to", "poison", "--on", "stable", "--when", "Modality~=M[RG]")
        accounts = accounts_of(server)
        with httpx.Client(base_url=server.base_url, timeout=30, headers=accounts["admin"].bearer) as http:
            assert http.post("/api/routes", json={"name": "r", "actions": []}).status_code == 400
            viewer = accounts["viewer"].bearer
            assert http.get("/api/routes", headers=viewer).status_code == 403
            body = {"name": "rest-ct", "conditions": [{"keyword": "Modality", "pattern": "CT", "kind": "exact"}],
                    "actions": [{"kind": "forward", "node": "poison"}]}  # fmt: skip
            assert http.post("/api/routes", json=body).status_code == 201
            assert http.post("/api/routes", json=body).status_code == 409
        listed = server.cli("route", "list").stdout
        assert "stable-mr" in listed and "rest-ct" in listed and "Modality~=M[RG]" in listed

        ct = generate("small", tmp_path / "ct", 6, seed=5, per_series=6)
        run_dcmtk("storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), *map(str, ct))
        study = str(pydicom.dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID)
        tested = json.loads(server.cli("route", "test", study, "--json").stdout)
        assert {t["rule"]: t["fires"] for t in tested} == {"stable-mr": False, "rest-ct": True}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(received) < 4:
            time.sleep(0.1)
        assert len(received) == 4  # 6 sent: one refused, one the peer held already
        jobs = []
        while time.monotonic() < deadline:
            jobs = _jobs(server)["jobs"]
            if jobs and all(j["state"] == "done" for j in jobs):
                break
            time.sleep(0.1)
        # per study, not per instance: one job, or a few if the burst outran the listener
        totals = {k: sum(j["progress"][k] for j in jobs) for k in ("parked", "duplicates", "sent")}
        assert totals == {"parked": 1, "duplicates": 1, "sent": 5}
        job = next(j for j in jobs if j["progress"]["parked"])
        shown = json.loads(server.cli("jobs", "show", str(job["id"])).stdout)
        (parked,) = shown["parked"]
        assert parked["status"] == "0xA700"
        assert "refused by node:poison" in server.cli("jobs", "alerts").stdout
        server.cli("route", "remove", "rest-ct")
        assert "rest-ct" not in server.cli("route", "list").stdout
    finally:
        server.stop()
        listener.shutdown()


def test_a_study_forwarded_by_hand_goes_whole_each_time(tmp_path: Path, sqlite_url: str, scp: Scp) -> None:
    paths = generate("small", tmp_path / "corpus", 5, seed=9, per_series=5)
    server = _server(tmp_path, sqlite_url)
    try:
        server.cli("node", "add", "dest", "--ae-title", "DEST", "--host", "127.0.0.1", "--port", str(scp.port))
        run_dcmtk("storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), *map(str, paths))
        study = str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
        unknown = server.cli("jobs", "forward", study, "--to", "nowhere", check=False)
        assert unknown.returncode == 1 and "no node named 'nowhere'" in unknown.stderr
        patient = str(pydicom.dcmread(paths[0], stop_before_pixels=True).PatientID)
        fix = server.cli("qa", "update-patient", patient, "--set", "PatientName=SENT^AFTER", "--reason", "typo",
                         "--json")  # fmt: skip
        for _ in range(2):
            job = json.loads(server.cli("jobs", "forward", study, "--to", "dest", "--json").stdout)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                shown = _job(server, job["id"])
                if shown["state"] == "done":
                    break
                time.sleep(0.2)
            assert shown["state"] == "done" and shown["progress"]["sent"] == 5
        assert len(scp.wait_for(5)) == 5
        # an undo of a correction lists the copies that left the archive since, forwarded ones too
        undone = json.loads(
            server.cli("qa", "undo", str(json.loads(fix.stdout)["id"]), "--reason", "back", "--json").stdout
        )
        sent = undone["summary"]["left_the_archive"]["retrievals"]
        assert [(s["action"], s["destination"], s["instances"]) for s in sent] == [("forward-sent", "node:dest", 5)] * 2
        paused = json.loads(server.cli("jobs", "forward", study, "--to", "dest", "--json").stdout)
        server.cli("jobs", "cancel", str(paused["id"]), check=False)
        assert "cancelled" in server.cli("jobs", "list", "--state", "cancelled").stdout or json.loads(
            server.cli("jobs", "show", str(paused["id"])).stdout
        )["state"] in ("done", "cancelled")
        again = server.cli("jobs", "resume", str(paused["id"]), check=False)
        assert again.returncode == 1 and "cannot become pending" in again.stderr
    finally:
        server.stop()


def test_find_and_retrieve_from_a_second_openpacs(tmp_path: Path, sqlite_url: str) -> None:
    paths = generate("small", tmp_path / "remote-corpus", 6, seed=13, per_series=3)
    first = pydicom.dcmread(paths[0], stop_before_pixels=True)
    study, patient = str(first.StudyInstanceUID), str(first.PatientID)
    ours = _server(tmp_path / "ours", sqlite_url)
    remote = start_server(
        tmp_path / "remote" / "data",
        f"sqlite:///{tmp_path / 'remote.sqlite3'}",
        extra_env={"OPENPACS_AE_TITLE": "REMOTE"},
    )
    try:
        run_dcmtk("storescu", "-aec", "REMOTE", "127.0.0.1", str(remote.dicom_port), *map(str, paths))
        remote.cli("node", "add", "ours", "--ae-title", "OPENPACS", "--host", "127.0.0.1",
                   "--port", str(ours.dicom_port))  # fmt: skip
        ours.cli("node", "add", "remote", "--ae-title", "REMOTE", "--host", "127.0.0.1",
                 "--port", str(remote.dicom_port))  # fmt: skip
        found = json.loads(ours.cli("remote", "find", "remote", "-k", f"PatientID={patient}", "-k",
                                    "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances", "--json").stdout)  # fmt: skip
        assert [(a["0020000D"]["Value"][0], a["00201208"]["Value"][0]) for a in found] == [(study, 6)]
        assert "1 answers" in ours.cli("remote", "find", "remote", "-k", f"PatientID={patient}").stdout
        bad = ours.cli("remote", "find", "remote", "-k", "NoSuchKeyword=1", check=False)
        assert bad.returncode == 1 and "not a DICOM keyword" in bad.stderr
        job = json.loads(ours.cli("remote", "retrieve", "remote", study, "--json").stdout)
        deadline = time.monotonic() + 60
        shown: dict[str, Any] = {}
        while time.monotonic() < deadline:
            shown = _job(ours, job["id"])
            if shown["state"] in ("done", "failed"):
                break
            time.sleep(0.3)
        assert shown["state"] == "done" and shown["progress"]["completed"] == 6, shown
        stats = json.loads(ours.cli("stats", "--json").stdout)
        assert stats["instances"] == 6

        # retrieval by C-GET: the instances come on our own association
        more = generate("small", tmp_path / "more", 3, seed=14, per_series=3)
        run_dcmtk("storescu", "-aec", "REMOTE", "127.0.0.1", str(remote.dicom_port), *map(str, more))
        other = str(pydicom.dcmread(more[0], stop_before_pixels=True).StudyInstanceUID)
        job = json.loads(ours.cli("remote", "retrieve", "remote", other, "--via", "get", "--json").stdout)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = _job(ours, job["id"])
            if shown["state"] in ("done", "failed"):
                break
            time.sleep(0.3)
        assert shown["state"] == "done" and shown["progress"]["completed"] == 3, shown
        assert shown["params"]["via"] == "get"
        assert json.loads(ours.cli("stats", "--json").stdout)["instances"] == 9

        # prefetch: a new study of a patient brings the patient's priors from the remote node
        studies = []
        for seed, date in ((21, "20200101"), (22, "20230101"), (23, "20260101")):
            files = generate("small", tmp_path / f"prior-{seed}", 2, seed=seed, per_series=2)
            for path in files:
                ds = pydicom.dcmread(path)
                ds.PatientID, ds.StudyDate = "PRIOR1", date
                ds.save_as(path, enforce_file_format=True)
            studies.append((str(pydicom.dcmread(files[0]).StudyInstanceUID), files))
        for _, files in studies[:2]:
            run_dcmtk("storescu", "-aec", "REMOTE", "127.0.0.1", str(remote.dicom_port), *map(str, files))
        ours.cli("route", "add", "priors", "--prefetch-from", "remote", "--priors", "1", "--when", "PatientID=PRIOR*")
        run_dcmtk("storescu", "-aec", ours.ae_title, "127.0.0.1", str(ours.dicom_port), *map(str, studies[2][1]))
        deadline = time.monotonic() + 60
        newest_prior = studies[1][0]
        found_here: list[Any] = []
        while time.monotonic() < deadline:
            found_here = json.loads(ours.cli("stats", "--json").stdout)["studies"], _jobs(ours)["jobs"]
            prefetches = [j for j in found_here[1] if j["kind"] == "prefetch"]
            if prefetches and all(j["state"] == "done" for j in prefetches):
                break
            time.sleep(0.3)
        (prefetch,) = [j for j in _jobs(ours)["jobs"] if j["kind"] == "prefetch"]
        assert prefetch["state"] == "done" and prefetch["progress"]["priors"] == [newest_prior], prefetch
        assert json.loads(ours.cli("stats", "--json").stdout)["studies"] == 4  # two retrieved, the new one, one prior
    finally:
        ours.stop()
        remote.stop()
