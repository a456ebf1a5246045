"""SIGKILL in the middle of a storescu burst: every acknowledged instance survives, and
the index and the storage agree after the restart."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydicom.dataset import Dataset

from conftest import ServerProcess, dcmtk_tool, start_server
from corpus import generate
from dimse_client import c_find, c_get

pytestmark = pytest.mark.usefixtures("dcmtk")


def _acknowledged(log: str) -> list[Path]:
    """Files storescu got a success response for (its -v output, in order)."""
    done: list[Path] = []
    current: Path | None = None
    for line in log.splitlines():
        match = re.search(r"Sending file: (.+)$", line)
        if match:
            current = Path(match.group(1).strip())
        elif "Received Store Response (Success)" in line and current is not None:
            done.append(current)
            current = None
    return done


def _locations(url: str) -> list[tuple[str, int]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.exec_driver_sql("SELECT key, size FROM location")]
    finally:
        engine.dispose()


def test_kill_during_burst_then_restart(database_url: str, tmp_path: Path) -> None:
    files = generate("small", tmp_path / "corpus", 400, seed=3, per_series=50)
    env = {"OPENPACS_STORAGE__DELETION_GRACE_SECONDS": "1"}
    server = start_server(tmp_path / "data", database_url, extra_env=env)
    log_path = tmp_path / "storescu.log"
    with log_path.open("w") as log:
        sender = subprocess.Popen(
            [
                dcmtk_tool("storescu"),
                "-v",
                "-aec",
                "OPENPACS",
                "+sd",
                "127.0.0.1",
                str(server.dicom_port),
                str(tmp_path / "corpus"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_acknowledged(log_path.read_text())) < 60:
            time.sleep(0.01)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        sender.wait(timeout=60)
    acknowledged = _acknowledged(log_path.read_text())
    assert 60 <= len(acknowledged) < len(files), "the kill should land in the middle of the burst"

    restarted: ServerProcess = start_server(
        tmp_path / "data", database_url, extra_env=env, dicom_port=server.dicom_port
    )
    try:
        import pydicom

        wanted = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in acknowledged}
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = ""
        query.SeriesInstanceUID = ""
        query.SOPInstanceUID = list(wanted)
        found = {str(a.SOPInstanceUID): str(a.StudyInstanceUID) for a in c_find(restarted.dicom_port, query).answers}
        assert set(wanted) <= set(found), f"{len(set(wanted) - set(found))} acknowledged instances were lost"
        # retrievable, byte for byte
        some = sorted(wanted)[:: max(1, len(wanted) // 5)]
        for uid in some:
            original = pydicom.dcmread(wanted[uid])
            got = c_get(
                restarted.dicom_port,
                found[uid],
                [original.SOPClassUID],
                ["1.2.840.10008.1.2.1"],
                series_uid=original.SeriesInstanceUID,
                sop_instance_uid=uid,
            )
            (received,) = got.received
            assert received.PixelData == original.PixelData
        # the index and the storage agree: no row without its file; orphans swept after the grace period
        storage = tmp_path / "data" / "storage"
        time.sleep(3)
        locations = _locations(database_url)
        for key, size in locations:
            assert (storage / key).stat().st_size == size
        deadline = time.monotonic() + 20
        on_disk = {str(p.relative_to(storage)) for p in storage.rglob("*.dcm")}
        while on_disk != {k for k, _ in locations} and time.monotonic() < deadline:
            time.sleep(0.5)
            on_disk = {str(p.relative_to(storage)) for p in storage.rglob("*.dcm")}
        assert on_disk == {k for k, _ in locations}
    finally:
        restarted.stop()
