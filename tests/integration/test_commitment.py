"""Storage commitment after forwarding, and delete after confirmed delivery: with Debian's
Orthanc (it reports on an association of its own) and with a pynetdicom Storage Commitment
SCP that reports on the request's association and fails one instance."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from conftest import ServerProcess, free_port, run_dcmtk, start_server
from corpus import generate
from peers import start_orthanc
from web import accounts_of

pytestmark = pytest.mark.usefixtures("dcmtk")

STABLE_SOON = {
    "OPENPACS_ROUTING__RETRY_BASE_SECONDS": "0.2",
    "OPENPACS_ROUTING__RETRY_MAX_SECONDS": "1",
    # long enough that a loaded machine does not call a study stable between two of its C-STOREs
    "OPENPACS_ROUTING__STABLE_AFTER_SECONDS": "2",
    "OPENPACS_STORAGE__DELETION_GRACE_SECONDS": "0",
}


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(tmp_path / "ours", f"sqlite:///{tmp_path / 'ours.sqlite3'}", extra_env=STABLE_SOON)
    try:
        yield server
    finally:
        server.stop()


def _forward_job(server: ServerProcess, timeout: float = 60) -> dict[str, Any]:
    """The forwarding job once it is done and its commitment answered."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.base_url, timeout=30, headers=accounts_of(server)["admin"].bearer) as http:
        while True:
            jobs = [j for j in http.get("/api/jobs").json()["jobs"] if j["kind"] == "forward"]
            if jobs and jobs[0]["state"] in ("done", "failed"):
                shown = dict(http.get(f"/api/jobs/{jobs[0]['id']}").json())
                if shown["commitments"] and shown["commitments"][-1]["state"] != "requested":
                    return shown
            if time.monotonic() > deadline:
                return dict(http.get(f"/api/jobs/{jobs[0]['id']}").json()) if jobs else {}
            time.sleep(0.2)


def _instances(server: ServerProcess) -> int:
    return int(json.loads(server.cli("stats", "--json").stdout)["instances"])


def test_orthanc_commits_on_its_own_association_and_the_study_is_deleted_here(
    tmp_path: Path, ours: ServerProcess
) -> None:
    orthanc = start_orthanc(tmp_path / "orthanc", {"openpacs": ["OPENPACS", "127.0.0.1", ours.dicom_port]})
    try:
        ours.cli("node", "add", "orthanc", "--ae-title", "ORTHANC", "--host", "127.0.0.1", "--port", str(orthanc.port))
        refused = ours.cli("route", "add", "bad", "--to", "orthanc", "--delete-after", check=False)
        assert refused.returncode == 1 and "needs storage commitment" in refused.stderr
        ours.cli("route", "add", "archive", "--to", "orthanc", "--on", "stable", "--commit", "--delete-after")
        paths = generate("small", tmp_path / "corpus", 5, seed=41, per_series=5)
        run_dcmtk("storescu", "-aec", ours.ae_title, "127.0.0.1", str(ours.dicom_port), *map(str, paths))
        job = _forward_job(ours)
        assert job["state"] == "done" and job["progress"]["sent"] == 5, job
        (commitment,) = job["commitments"]
        assert (commitment["state"], commitment["instances"], commitment["failed"]) == ("committed", 5, [])
        assert len(orthanc.instances()) == 5
        deadline = time.monotonic() + 20
        while _instances(ours) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _instances(ours) == 0  # delivered, committed, deleted here
        log = ours.wait_for_log("N-EVENT-REPORT 1")
        assert "N-EVENT-REPORT 1" in log
    finally:
        orthanc.stop()


class CommitmentScp:
    """pynetdicom: takes C-STORE, and reports storage commitment on the request's association,
    failing one instance (0x0112 no such object instance)."""

    def __init__(self, fail_uid: str) -> None:
        self.port = free_port()
        self.fail_uid = fail_uid
        self.ae = AE(ae_title="COMMIT")
        self.ae.supported_contexts = StoragePresentationContexts[:100]
        self.ae.add_supported_context(StorageCommitmentPushModel)
        self.stored: list[str] = []
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_N_ACTION, self._on_action), (evt.EVT_C_STORE, self._on_store)],
        )

    def _on_store(self, event: Any) -> int:
        self.stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def _on_action(self, event: Any) -> tuple[int, None]:
        info = event.action_information
        report = Dataset()
        report.TransactionUID = info.TransactionUID
        refs = list(info.ReferencedSOPSequence)
        report.ReferencedSOPSequence = [i for i in refs if i.ReferencedSOPInstanceUID != self.fail_uid]
        failed = [i for i in refs if i.ReferencedSOPInstanceUID == self.fail_uid]
        for item in failed:
            item.FailureReason = 0x0112
        if failed:
            report.FailedSOPSequence = failed

        def send() -> None:
            time.sleep(0.2)  # after the N-ACTION-RSP
            event.assoc.send_n_event_report(
                report, 2 if failed else 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1"
            )

        threading.Thread(target=send, daemon=True).start()
        return 0x0000, None

    def stop(self) -> None:
        self.server.shutdown()


def test_a_report_on_the_same_association_with_a_failure_keeps_what_was_not_committed(
    tmp_path: Path, ours: ServerProcess
) -> None:
    paths = generate("small", tmp_path / "corpus", 4, seed=42, per_series=4)
    kept = str(pydicom.dcmread(paths[2], stop_before_pixels=True).SOPInstanceUID)
    scp = CommitmentScp(kept)
    try:
        ours.cli("node", "add", "commit", "--ae-title", "COMMIT", "--host", "127.0.0.1", "--port", str(scp.port))
        with httpx.Client(base_url=ours.base_url, timeout=30, headers=accounts_of(ours)["admin"].bearer) as http:
            created = http.post(
                "/api/routes",
                json={"name": "sc", "event": "stable",
                      "actions": [{"kind": "forward", "node": "commit", "commit": True, "delete_after": True}]},
            )  # fmt: skip
            assert created.status_code == 201, created.text
            stow = http.post(
                "/api/routes",
                json={"name": "bad", "actions": [{"kind": "stow", "url": "http://x/", "commit": True}]},
            )
            assert stow.status_code == 400 and "C-STORE" in stow.text
        run_dcmtk("storescu", "-aec", ours.ae_title, "127.0.0.1", str(ours.dicom_port), *map(str, paths))
        job = _forward_job(ours)
        assert job["state"] == "done" and job["progress"]["sent"] == 4, job
        (commitment,) = job["commitments"]
        assert commitment["state"] == "failed" and [f[1:] for f in commitment["failed"]] == [[kept, 0x0112]], commitment
        assert _instances(ours) == 1  # the three committed are deleted; the one not committed is kept
        alerts = json.loads(ours.cli("jobs", "alerts", "--json").stdout)
        assert any(a["kind"] == "commitment-failed" and kept in a["details"]["instances"] for a in alerts), alerts
    finally:
        scp.stop()


def test_a_report_for_a_transaction_we_never_asked_changes_nothing(ours: ServerProcess) -> None:
    ae = AE(ae_title="HOSTILE")
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", ours.dicom_port, ae_title=ours.ae_title)
    assert assoc.is_established
    try:
        report = Dataset()
        report.TransactionUID = "1.2.3.4.5"
        report.ReferencedSOPSequence = []
        status, _ = assoc.send_n_event_report(report, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
        assert status.Status == 0x0112 and "unknown transaction" in status.ErrorComment
        again = Dataset()
        again.FailedSOPSequence = []  # no Transaction UID at all
        answered, _ = assoc.send_n_event_report(again, 2, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
        assert answered.Status == 0x0112
    finally:
        assoc.release()
    assert "C-ECHO" not in ours.wait_for_log("N-EVENT-REPORT 2")
    assert json.loads(ours.cli("jobs", "alerts", "--json").stdout) == []
