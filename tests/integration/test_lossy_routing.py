"""A lossy routing rule: the derived instance (new SOP Instance UID, Lossy Image Compression 01,
Source Image Sequence) is made once, stored hidden, and the same copy goes to every
destination that asks for it; what queries show is the original."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from conftest import ServerProcess, dcmtk_tool, free_port, run_dcmtk, start_server
from web import accounts_of

pytestmark = pytest.mark.usefixtures("dcmtk")

JPEG_2000 = "1.2.840.10008.1.2.4.91"


def _storescp(out: Path, ae_title: str) -> tuple[subprocess.Popen[bytes], int]:
    out.mkdir(parents=True)
    port = free_port()
    process = subprocess.Popen(
        [dcmtk_tool("storescp"), "+xa", "-aet", ae_title, "-od", str(out), str(port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return process, port


def _wait_files(folder: Path, count: int, timeout: float = 60) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(p for p in folder.iterdir() if p.is_file())
        if len(found) >= count:
            return found
        time.sleep(0.2)
    return sorted(folder.iterdir())


def _ct_study(folder: Path, count: int) -> list[Path]:
    """*count* 128 x 128 CT images of one series (pydicom's CT_small.dcm, new UIDs)."""
    folder.mkdir()
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    study, series = generate_uid(), generate_uid()
    paths = []
    for n in range(count):
        ds = template.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = n + 1
        ds.PatientID = "LOSSY1"
        paths.append(folder / f"{n}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def test_a_lossy_copy_is_made_once_and_sent_to_every_destination(tmp_path: Path) -> None:
    server: ServerProcess = start_server(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'index.sqlite3'}",
        extra_env={"OPENPACS_ROUTING__STABLE_AFTER_SECONDS": "0.5", "OPENPACS_ROUTING__RETRY_BASE_SECONDS": "0.2"},
    )
    first, first_port = _storescp(tmp_path / "first", "FIRST")
    second, second_port = _storescp(tmp_path / "second", "SECOND")
    try:
        for name, port in (("first", first_port), ("second", second_port)):
            server.cli("node", "add", name, "--ae-title", name.upper(), "--host", "127.0.0.1", "--port", str(port))
        bad = server.cli("route", "add", "jpeg", "--to", "first", "--lossy", "1.2.840.10008.1.2.4.50", check=False)
        assert bad.returncode == 1 and "JPEG-LS near-lossless" in bad.stderr
        bad = server.cli("route", "add", "near", "--to", "first", "--lossy", "1.2.840.10008.1.2.4.81", check=False)
        assert bad.returncode == 1 and "NEAR value" in bad.stderr
        for name in ("first", "second"):
            server.cli("route", "add", f"lossy-{name}", "--to", name, "--on", "stable", "--lossy", JPEG_2000,
                       "--quality", "10")  # fmt: skip
        paths = _ct_study(tmp_path / "corpus", 3)
        originals = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}
        run_dcmtk("storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), *map(str, paths))
        sent = {}
        for name in ("first", "second"):
            files = _wait_files(tmp_path / name, 3)
            assert len(files) == 3, server.cli("jobs", "show", "1").stdout  # parked instances say why
            copies = [pydicom.dcmread(f) for f in files]
            sent[name] = {str(ds.SOPInstanceUID) for ds in copies}
            for ds in copies:
                assert ds.file_meta.TransferSyntaxUID == JPEG_2000
                assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_15444_1"
                assert float(ds.LossyImageCompressionRatio) > 1
                assert ds.ImageType[0] == "DERIVED"
                assert str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID) in originals
                assert ds.pixel_array.shape == (int(ds.Rows), int(ds.Columns))
        assert sent["first"] == sent["second"]  # the same copies, made once
        assert not sent["first"] & originals
        # queries show the originals only; the copies are stored, hidden
        study = str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
        with httpx.Client(base_url=server.base_url, timeout=30, headers=accounts_of(server)["admin"].bearer) as http:
            shown = http.get(f"/dicom-web/studies/{study}/instances").json()
        assert {a["00080018"]["Value"][0] for a in shown} == originals
        assert json.loads(server.cli("stats", "--json").stdout)["instances"] == 6
        hidden = json.loads(server.cli("qa", "hidden", study, "--json").stdout)
        assert {h["sop_instance_uid"] for h in hidden} == sent["first"]
        assert {h["hidden"] for h in hidden} == {"derived"}
    finally:
        first.kill()
        second.kill()
        server.stop()
