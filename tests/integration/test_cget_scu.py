"""C-GET as SCU (DimsePeer.get, PS3.4 C.4.3) against DCMTK's dcmqrscp and a running OpenPACS:
C-STORE sub-operations on the retrieving association, their statuses, counts and cancel."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGLosslessSV1, generate_uid

from conftest import ServerProcess, dcmtk_tool, free_port, run_dcmtk
from corpus import generate
from openpacs.dimse.peer import STORAGE_SOP_CLASSES, DimsePeer
from openpacs.domain.errors import PeerError
from openpacs.ports.peers import PeerAddress

pytestmark = pytest.mark.usefixtures("dcmtk")

_PATIENT = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")


@dataclass(frozen=True)
class Study:
    """Three uncompressed CT instances and one JPEG Lossless SC instance of one study."""

    uid: str
    folder: Path
    originals: dict[str, Dataset]  # SOP Instance UID -> the file as written
    sc_uid: str

    @property
    def ct_uids(self) -> set[str]:
        return set(self.originals) - {self.sc_uid}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    folder = tmp_path_factory.mktemp("study")
    paths = generate("small", folder, 3, seed=11)
    first = pydicom.dcmread(paths[0])
    sc = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"))
    assert sc.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    for keyword in _PATIENT:
        setattr(sc, keyword, first.get(keyword, ""))
    sc.StudyInstanceUID = first.StudyInstanceUID
    sc.SeriesInstanceUID = generate_uid()
    sc.SOPInstanceUID = sc.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    sc.save_as(folder / "sc-jpeg.dcm")
    originals = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, sorted(folder.iterdir()))}
    return Study(str(first.StudyInstanceUID), folder, originals, str(sc.SOPInstanceUID))


def _peer() -> DimsePeer:
    return DimsePeer(ae_title="GETSCU", max_pdu=65536, timeout=10)


class Received:
    """A ``store`` callback that keeps what arrives; *answer(ds)* gives the status to return."""

    def __init__(self, answer: Callable[[Dataset], int] = lambda ds: 0x0000) -> None:
        self.answer = answer
        self.datasets: dict[str, Dataset] = {}

    def __call__(self, data: bytes) -> int:
        ds = pydicom.dcmread(io.BytesIO(data))
        self.datasets[str(ds.SOPInstanceUID)] = ds
        return self.answer(ds)


def _assert_intact(received: Dataset, original: Dataset) -> None:
    assert received.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert received.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    assert received.file_meta.MediaStorageSOPClassUID == original.SOPClassUID
    assert received.PixelData == original.PixelData
    assert received.StudyInstanceUID == original.StudyInstanceUID


# -- DCMTK's dcmqrscp ------------------------------------------------------------------


@pytest.fixture(scope="module")
def dcmqrscp(study: Study, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerAddress]:
    """dcmqrscp serving *study*, accepting JPEG Lossless SV1 besides the uncompressed syntaxes (+xs)."""
    base = tmp_path_factory.mktemp("dcmqrscp")
    (base / "db").mkdir()
    port = free_port()
    config = base / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 4\n"
        "HostTable BEGIN\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\nQRSCP {base / 'db'} RW (10, 100mb) ANY\nAETable END\n"
    )
    indexed = run_dcmtk("dcmqridx", str(base / "db"), *map(str, sorted(study.folder.iterdir())))
    assert indexed.returncode == 0, indexed.stderr
    log = (base / "dcmqrscp.log").open("wb")
    # the default (forking) mode: dcmqrscp 3.6.7 in --single-process mode crashed after an association
    process = subprocess.Popen(
        [dcmtk_tool("dcmqrscp"), "-v", "-c", str(config), "+xs", str(port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    try:
        yield PeerAddress("QRSCP", "127.0.0.1", port)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_c_get_of_a_study_from_dcmqrscp(dcmqrscp: PeerAddress, study: Study) -> None:
    received = Received()
    seen: list[dict[str, int]] = []
    counts = _peer().get(dcmqrscp, "STUDY", [study.uid], received, progress=lambda c: seen.append(c) or True)
    assert set(received.datasets) == study.ct_uids
    for uid, ds in received.datasets.items():
        _assert_intact(ds, study.originals[uid])
        assert ds.file_meta.SourceApplicationEntityTitle == "QRSCP"
    # dcmqrscp (DCMTK 3.6.7, still so on its master) sends each sub-operation on the first
    # accepted context of the SOP class, the uncompressed one we propose first, and has no
    # decoder: it cannot send the JPEG instance and counts it failed.
    assert counts == {"remaining": 0, "completed": 3, "failed": 1, "warning": 0, "status": 0xB000}
    assert len(seen) == 4
    assert [c["remaining"] for c in seen] == [3, 2, 1, 0]


def test_c_get_of_an_unknown_study_from_dcmqrscp_retrieves_nothing(dcmqrscp: PeerAddress) -> None:
    received = Received()
    counts = _peer().get(dcmqrscp, "STUDY", [generate_uid()], received)
    assert counts["completed"] == 0 and counts["failed"] == 0 and counts["status"] == 0x0000
    assert not received.datasets


# -- a running OpenPACS -----------------------------------------------------------------


@pytest.fixture(scope="module")
def openpacs(sqlite_server: ServerProcess, study: Study) -> PeerAddress:
    """The server holding *study*, sent by DCMTK's storescu (the JPEG instance as it is: -xs)."""
    port = str(sqlite_server.dicom_port)
    sc = str(study.folder / "sc-jpeg.dcm")
    cts = [str(p) for p in sorted(study.folder.iterdir()) if p.name != "sc-jpeg.dcm"]
    for args in (["-xs", sc], cts):
        result = run_dcmtk("storescu", "-aec", "OPENPACS", "127.0.0.1", port, *args)
        assert result.returncode == 0, result.stderr
    return PeerAddress("OPENPACS", "127.0.0.1", sqlite_server.dicom_port)


def test_c_get_of_a_study_from_openpacs(openpacs: PeerAddress, study: Study) -> None:
    received = Received()
    counts = _peer().get(openpacs, "STUDY", [study.uid], received)
    assert counts == {"remaining": 0, "completed": 4, "failed": 0, "warning": 0, "status": 0x0000}
    assert set(received.datasets) == set(study.originals)
    for uid, ds in received.datasets.items():
        _assert_intact(ds, study.originals[uid])  # the JPEG instance keeps its transfer syntax
    assert received.datasets[study.sc_uid].file_meta.TransferSyntaxUID == JPEGLosslessSV1
    assert received.datasets[study.sc_uid].file_meta.SourceApplicationEntityTitle == "OPENPACS"


def test_c_get_of_instances_from_openpacs(openpacs: PeerAddress, study: Study) -> None:
    ct_uid = min(study.ct_uids)
    received = Received()
    counts = _peer().get(openpacs, "IMAGE", [study.sc_uid, ct_uid], received)
    assert (counts["completed"], counts["failed"], counts["status"]) == (2, 0, 0x0000)
    assert set(received.datasets) == {study.sc_uid, ct_uid}
    assert received.datasets[study.sc_uid].file_meta.TransferSyntaxUID == JPEGLosslessSV1
    assert received.datasets[ct_uid].file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


@pytest.mark.parametrize("refusal", ["status", "exception"])
def test_a_refused_sub_operation_counts_as_failed(openpacs: PeerAddress, study: Study, refusal: str) -> None:
    def answer(ds: Dataset) -> int:
        if ds.SOPInstanceUID != study.sc_uid:
            return 0x0000
        if refusal == "exception":
            raise OSError("disk full")  # answered 0xC000
        return 0xA700

    received = Received(answer)
    counts = _peer().get(openpacs, "STUDY", [study.uid], received)
    assert counts == {"remaining": 0, "completed": 3, "failed": 1, "warning": 0, "status": 0xB000}
    assert set(received.datasets) == set(study.originals)


def test_only_the_offered_sop_classes_are_retrieved(openpacs: PeerAddress, study: Study) -> None:
    received = Received()
    counts = _peer().get(openpacs, "STUDY", [study.uid], received, sop_classes=[CTImageStorage])
    assert (counts["completed"], counts["failed"], counts["status"]) == (3, 1, 0xB000)
    assert set(received.datasets) == study.ct_uids


def test_progress_returning_false_cancels(openpacs: PeerAddress, study: Study) -> None:
    received = Received()
    counts = _peer().get(openpacs, "STUDY", [study.uid], received, progress=lambda counts: False)
    assert counts["status"] == 0xFE00
    assert 1 <= counts["completed"] < 4
    assert len(received.datasets) == counts["completed"]


def test_c_get_of_an_unknown_uid_from_openpacs_retrieves_nothing(openpacs: PeerAddress) -> None:
    received = Received()
    counts = _peer().get(openpacs, "IMAGE", [generate_uid()], received)
    assert counts == {"remaining": 0, "completed": 0, "failed": 0, "warning": 0, "status": 0x0000}
    assert not received.datasets


# -- failures before any sub-operation --------------------------------------------------


def test_nothing_listening_raises_peer_error() -> None:
    with pytest.raises(PeerError, match="connection refused"):
        _peer().get(PeerAddress("NOBODY", "127.0.0.1", free_port()), "STUDY", [generate_uid()], Received())


def test_bad_requests_raise_peer_error_without_connecting() -> None:
    nowhere = PeerAddress("NOBODY", "127.0.0.1", 9)
    with pytest.raises(PeerError, match="level"):
        _peer().get(nowhere, "PATIENT", [generate_uid()], Received())
    too_many = [f"1.2.3.{n}" for n in range(64)]
    with pytest.raises(PeerError, match="128"):
        _peer().get(nowhere, "STUDY", [generate_uid()], Received(), sop_classes=too_many)


def test_the_default_storage_sop_classes_fit_one_association() -> None:
    assert 40 <= len(STORAGE_SOP_CLASSES) == len(set(STORAGE_SOP_CLASSES))
    assert 1 + 2 * len(STORAGE_SOP_CLASSES) <= 128
