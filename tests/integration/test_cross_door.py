"""One archive behind every door: what C-STORE stored, DICOMweb serves; what STOW-RS
stored, C-FIND finds and C-MOVE sends (DCMTK's findscu and movescu as the clients)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from conftest import ServerProcess, StoreScp, run_dcmtk
from web import accounts_of, dicomweb

pytestmark = pytest.mark.usefixtures("dcmtk")


def _sample(name: str, **changes: object) -> pydicom.Dataset:
    path = get_testdata_file(name)
    assert path is not None
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    if "SOPInstanceUID" in changes:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def test_c_store_then_qido_and_wado(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("cstore")
    path = get_testdata_file("MR_small_RLE.dcm")
    assert path is not None
    original = pydicom.dcmread(path)
    shutil.copy(path, folder / "rle.dcm")
    # -xr: propose RLE Lossless first, so that the archive stores the object compressed
    result = run_dcmtk("storescu", "-xr", "-aec", "OPENPACS", "+sd", "127.0.0.1", str(server.dicom_port), str(folder))
    assert result.returncode == 0, result.stderr
    client = dicomweb(server, accounts_of(server)["viewer"])
    (study,) = client.search_for_studies(search_filters={"StudyInstanceUID": original.StudyInstanceUID})
    assert study["00100020"]["Value"] == [original.PatientID]
    instance = client.retrieve_instance(
        original.StudyInstanceUID,
        original.SeriesInstanceUID,
        original.SOPInstanceUID,
        media_types=(("application/dicom",),),
    )
    assert instance.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"  # RLE decoded for the default
    assert np.array_equal(instance.pixel_array, original.pixel_array)
    metadata = client.retrieve_instance_metadata(
        original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID
    )
    assert metadata["00080018"]["Value"] == [original.SOPInstanceUID]


def test_stow_then_c_find_and_c_move(server: ServerProcess, storescp: StoreScp) -> None:
    study = generate_uid()
    datasets = [
        _sample("CT_small.dcm", StudyInstanceUID=study, SOPInstanceUID=generate_uid(), PatientID="XDOOR-1"),
        _sample("CT_small.dcm", StudyInstanceUID=study, SOPInstanceUID=generate_uid(), PatientID="XDOOR-1"),
    ]
    dicomweb(server, accounts_of(server)["integration"]).store_instances(datasets)

    found = run_dcmtk(
        "findscu",
        "-v",
        "-S",
        "-aec",
        "OPENPACS",
        "127.0.0.1",
        str(server.dicom_port),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientID=XDOOR-1",
        "-k",
        "StudyInstanceUID",
        "-k",
        "NumberOfStudyRelatedInstances",
    ).stderr
    assert study in found, found
    assert "Received Final Find Response (Success)" in found, found

    server.cli("node", "add", "xdoor-dest", "--ae-title", storescp.ae_title, "--host", "127.0.0.1",
               "--port", str(storescp.port), check=False)  # fmt: skip
    server.cli("node", "add", "xdoor-scu", "--ae-title", "XDOORSCU", "--host", "127.0.0.1", "--port", "104",
               check=False)  # fmt: skip
    moved = run_dcmtk(
        "movescu",
        "-v",
        "-S",
        "-aet",
        "XDOORSCU",
        "-aec",
        "OPENPACS",
        "-aem",
        storescp.ae_title,
        "127.0.0.1",
        str(server.dicom_port),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study}",
    ).stderr
    assert "Received Final Move Response (Success)" in moved, moved
    received = sorted(pydicom.dcmread(p).SOPInstanceUID for p in storescp.wait_for(2))
    assert received == sorted(d.SOPInstanceUID for d in datasets)
    for path in storescp.files():
        sent = next(d for d in datasets if d.SOPInstanceUID == pydicom.dcmread(path).SOPInstanceUID)
        assert pydicom.dcmread(path).PixelData == sent.PixelData
