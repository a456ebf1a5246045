"""WADO-RS (PS3.18 10.4) and WADO-URI (PS3.18 9) with dicomweb-client: the transfer syntax
rules, metadata from the index with ETag and Last-Modified, frames, bulk data, rendered
images and thumbnails."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from conftest import ServerProcess
from openpacs.domain import transfer_syntaxes as tsx
from web import Account, accounts_of, dicomweb, http

FILES = {
    "ct": "CT_small.dcm",  # Explicit VR Little Endian
    "j2k": "JPEG2000.dcm",  # JPEG 2000 (lossy)
    "rle": "MR_small_RLE.dcm",  # RLE Lossless
    "jpegll": "JPEG-LL.dcm",  # JPEG Lossless SV1
    "multiframe": "emri_small.dcm",  # 10 frames, Explicit VR Little Endian
    "bigendian": "MR_small_bigendian.dcm",  # Explicit VR Big Endian
    "rgb": "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline, YBR_FULL
}


def _path(key: str) -> Path:
    found = get_testdata_file(FILES[key])
    assert found is not None
    return Path(found)


def _read(key: str) -> pydicom.Dataset:
    return pydicom.dcmread(_path(key))


@pytest.fixture(scope="module")
def stored(sqlite_server: ServerProcess) -> ServerProcess:
    """The sample files, stored with STOW-RS."""
    account = accounts_of(sqlite_server)["technologist"]
    with http(sqlite_server, account) as client:
        for key in FILES:
            body, content_type = _multipart([_path(key).read_bytes()])
            response = client.post("/dicom-web/studies", content=body, headers={"Content-Type": content_type})
            # 202: stored, with a warning when the sample files disagree on a patient's demographics
            assert response.status_code in (200, 202), response.text
            assert "00081198" not in response.json()
    return sqlite_server


def _multipart(parts: list[bytes], boundary: str = "openpacs-test-boundary") -> tuple[bytes, str]:
    chunks = []
    for part in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        chunks.append(part)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


@pytest.fixture(scope="module")
def reader(stored: ServerProcess) -> Account:
    return accounts_of(stored)["viewer"]


def _uids(key: str) -> tuple[str, str, str]:
    ds = _read(key)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


# (file, transfer-syntax asked, expected syntax or None for 406)
SYNTAX_TABLE = [
    ("ct", None, tsx.EXPLICIT_LE),
    ("ct", "*", tsx.EXPLICIT_LE),
    ("ct", tsx.IMPLICIT_LE, tsx.IMPLICIT_LE),
    ("ct", tsx.RLE_LOSSLESS, tsx.RLE_LOSSLESS),
    ("ct", tsx.JPEG_LS_LOSSLESS, tsx.JPEG_LS_LOSSLESS),
    ("ct", tsx.JPEG_2000_LOSSLESS, tsx.JPEG_2000_LOSSLESS),
    ("ct", tsx.JPEG_BASELINE, None),  # never a lossy conversion under the same SOP Instance UID
    ("ct", "1.2.3.4", None),  # no such syntax
    ("j2k", None, tsx.EXPLICIT_LE),  # decompressed
    ("j2k", "*", tsx.JPEG_2000),  # as stored
    ("j2k", tsx.RLE_LOSSLESS, None),  # lossy pixels are never re-encoded as if lossless
    ("rle", None, tsx.EXPLICIT_LE),
    ("rle", "*", tsx.RLE_LOSSLESS),
    ("jpegll", tsx.JPEG_LS_LOSSLESS, tsx.JPEG_LS_LOSSLESS),  # lossless to lossless
    ("bigendian", None, tsx.EXPLICIT_LE),
    ("rgb", None, tsx.EXPLICIT_LE),
]


@pytest.mark.parametrize(("key", "asked", "expected"), SYNTAX_TABLE, ids=str)
def test_transfer_syntax_rules(
    stored: ServerProcess, reader: Account, key: str, asked: str | None, expected: str | None
) -> None:
    client = dicomweb(stored, reader)
    study, series, sop = _uids(key)
    # no transfer-syntax parameter at all: dicomweb-client asks for "*" unless told a media type alone
    media_types = (("application/dicom", asked),) if asked else (("application/dicom",),)
    if expected is None:
        with http(stored, reader) as raw:
            accept = f'multipart/related; type="application/dicom"; transfer-syntax={asked}'
            response = raw.get(
                f"/dicom-web/studies/{study}/series/{series}/instances/{sop}", headers={"Accept": accept}
            )
        assert response.status_code == 406
        assert "cannot be converted" in response.json()["error"]
        return
    if asked == tsx.IMPLICIT_LE:
        # dicomweb-client refuses to ask for Implicit VR Little Endian: ask with httpx
        instance = _retrieve_raw(stored, reader, f"/dicom-web/studies/{study}/series/{series}/instances/{sop}", asked)
    else:
        instance = client.retrieve_instance(study, series, sop, media_types=media_types)
    assert instance.file_meta.TransferSyntaxUID == expected
    original = _read(key)
    assert instance.SOPInstanceUID == original.SOPInstanceUID
    if asked == "*" or expected == original.file_meta.TransferSyntaxUID:
        assert instance.PixelData == original.PixelData
    elif tsx.is_uncompressed(expected) or expected not in tsx.LOSSY:
        # lossless: the decoded pixels are those of the stored instance
        assert np.array_equal(instance.pixel_array, original.pixel_array)


def _retrieve_raw(server: ServerProcess, account: Account, url: str, syntax: str) -> pydicom.Dataset:
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={syntax}'
    with http(server, account) as client:
        response = client.get(url, headers={"Accept": accept})
    assert response.status_code == 200
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
    (part,) = [p for p in response.content.split(b"--" + boundary.encode()) if b"\r\n\r\n" in p]
    headers, _, body = part.partition(b"\r\n\r\n")
    assert f"transfer-syntax={syntax}".encode() in headers
    return pydicom.dcmread(io.BytesIO(body[:-2]))


def test_a_study_retrieve_with_one_lossy_instance_refuses_a_lossless_syntax(
    stored: ServerProcess, reader: Account
) -> None:
    """406 before the first byte: the study holds JPEG 2000 (lossy) and JPEG Lossless instances."""
    study, _, _ = _uids("j2k")
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={tsx.RLE_LOSSLESS}'
    with http(stored, reader) as client:
        response = client.get(f"/dicom-web/studies/{study}", headers={"Accept": accept})
    assert response.status_code == 406
    assert "without loss" in response.json()["error"]
    both = dicomweb(stored, reader).retrieve_study(study, media_types=(("application/dicom", "*"),))
    assert sorted(i.file_meta.TransferSyntaxUID for i in both) == sorted([tsx.JPEG_2000, tsx.JPEG_LOSSLESS_SV1])


def test_star_streams_the_stored_file_byte_for_byte(stored: ServerProcess, reader: Account) -> None:
    study, series, sop = _uids("j2k")
    with http(stored, reader) as client:
        response = client.get(
            f"/dicom-web/studies/{study}/series/{series}/instances/{sop}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        )
    assert response.status_code == 200
    assert _path("j2k").read_bytes() in response.content


def test_study_series_and_instance_retrieval(stored: ServerProcess, reader: Account) -> None:
    client = dicomweb(stored, reader)
    study, series, sop = _uids("multiframe")
    assert len(client.retrieve_study(study)) == 1
    assert len(client.retrieve_series(study, series)) == 1
    instance = client.retrieve_instance(study, series, sop)
    assert instance.NumberOfFrames == 10


def test_metadata_comes_from_the_index_with_bulk_data_urls(stored: ServerProcess, reader: Account) -> None:
    client = dicomweb(stored, reader)
    study, series, sop = _uids("ct")
    (metadata,) = client.retrieve_series_metadata(study, series)
    assert metadata["00100010"]["Value"][0]["Alphabetic"] == str(_read("ct").PatientName)
    pixel = metadata["7FE00010"]
    assert "Value" not in pixel and "InlineBinary" not in pixel
    bulk_url = pixel["BulkDataURI"]
    assert bulk_url.startswith(f"{stored.base_url}/dicom-web/studies/{study}/series/{series}/instances/{sop}/bulk/")
    (data,) = client.retrieve_bulkdata(bulk_url)
    assert data == _read("ct").PixelData
    assert client.retrieve_instance_metadata(study, series, sop) == metadata
    assert len(client.retrieve_study_metadata(study)) == 1


def test_metadata_etag_and_last_modified(stored: ServerProcess, reader: Account) -> None:
    study, series, _ = _uids("ct")
    url = f"/dicom-web/studies/{study}/series/{series}/metadata"
    with http(stored, reader) as client:
        first = client.get(url)
        assert first.status_code == 200
        etag = first.headers["etag"]
        assert first.headers["last-modified"].endswith("GMT")
        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""


def test_frames_uncompressed_and_in_the_stored_syntax(stored: ServerProcess, reader: Account) -> None:
    client = dicomweb(stored, reader)
    study, series, sop = _uids("multiframe")
    original = _read("multiframe")
    frames = client.retrieve_instance_frames(study, series, sop, [2, 5])
    assert len(frames) == 2
    expected = original.pixel_array
    assert np.array_equal(np.frombuffer(frames[0], dtype=expected.dtype).reshape(64, 64), expected[1])
    assert np.array_equal(np.frombuffer(frames[1], dtype=expected.dtype).reshape(64, 64), expected[4])
    j2k_study, j2k_series, j2k_sop = _uids("j2k")
    (native,) = client.retrieve_instance_frames(j2k_study, j2k_series, j2k_sop, [1])
    assert len(native) == 1024 * 256 * 2  # decoded to uncompressed by default
    (compressed,) = client.retrieve_instance_frames(
        j2k_study, j2k_series, j2k_sop, [1], media_types=(("image/jp2", tsx.JPEG_2000),)
    )
    assert compressed[:4] in (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0c")  # a JPEG 2000 codestream


def test_missing_frames_and_bad_frame_lists(stored: ServerProcess, reader: Account) -> None:
    study, series, sop = _uids("multiframe")
    base = f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames"
    with http(stored, reader) as client:
        assert client.get(f"{base}/11").status_code == 404
        bad = client.get(f"{base}/0,x")
        assert bad.status_code == 400
        assert "frame numbers" in bad.json()["error"]


@pytest.mark.parametrize("media", ["image/jpeg", "image/png"])
def test_rendered_with_window_viewport_and_quality(stored: ServerProcess, reader: Account, media: str) -> None:
    study, series, sop = _uids("ct")
    url = f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/rendered"
    with http(stored, reader) as client:
        narrow = client.get(
            url, params={"window": "40,80", "viewport": "64,64", "quality": "80"}, headers={"Accept": media}
        )
        wide = client.get(url, params={"window": "40,4000"}, headers={"Accept": media})
    assert narrow.status_code == 200 and narrow.headers["content-type"] == media
    small = Image.open(io.BytesIO(narrow.content))
    assert small.size == (64, 64)
    assert small.format == ("PNG" if media == "image/png" else "JPEG")
    large = Image.open(io.BytesIO(wide.content))
    assert large.size == (128, 128)
    # a narrow window saturates more pixels than a wide one
    assert np.std(np.asarray(small)) != pytest.approx(np.std(np.asarray(large.resize((64, 64)))), rel=0.05)


def test_rendered_frame_of_a_multiframe_and_colour(stored: ServerProcess, reader: Account) -> None:
    client = dicomweb(stored, reader)
    study, series, sop = _uids("multiframe")
    png = client.retrieve_instance_frames_rendered(study, series, sop, [3], media_types=("image/png",))
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    study, series, sop = _uids("rgb")
    jpeg = client.retrieve_instance_rendered(study, series, sop)
    assert Image.open(io.BytesIO(jpeg)).mode == "RGB"


def test_thumbnails_at_every_level(stored: ServerProcess, reader: Account) -> None:
    study, series, sop = _uids("ct")
    with http(stored, reader) as client:
        for url in (
            f"/dicom-web/studies/{study}/thumbnail",
            f"/dicom-web/studies/{study}/series/{series}/thumbnail",
            f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/thumbnail?viewport=32,32",
        ):
            response = client.get(url, headers={"Accept": "image/jpeg"})
            assert response.status_code == 200, url
            assert max(Image.open(io.BytesIO(response.content)).size) <= 128


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"window": "abc"}, 400),
        ({"viewport": "0,10"}, 400),
        ({"viewport": "100000,100000"}, 400),
        ({"quality": "best"}, 400),
    ],
)
def test_bad_rendering_parameters(stored: ServerProcess, reader: Account, params: dict[str, str], status: int) -> None:
    study, series, sop = _uids("ct")
    with http(stored, reader) as client:
        response = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/rendered", params=params)
    assert response.status_code == status
    assert response.json()["error"]


def test_unknown_resources_are_404(stored: ServerProcess, reader: Account) -> None:
    with http(stored, reader) as client:
        for url in (
            "/dicom-web/studies/1.2.3.4",
            "/dicom-web/studies/1.2.3.4/metadata",
            "/dicom-web/studies/1.2.3/series/4",
        ):
            response = client.get(url)
            assert response.status_code == 404, url
            assert response.json()["error"]


def test_wado_uri(stored: ServerProcess, reader: Account) -> None:
    study, series, sop = _uids("ct")
    params = {"requestType": "WADO", "studyUID": study, "seriesUID": series, "objectUID": sop}
    with http(stored, reader) as client:
        dicom = client.get("/wado", params={**params, "contentType": "application/dicom"})
        assert dicom.status_code == 200
        assert pydicom.dcmread(io.BytesIO(dicom.content)).SOPInstanceUID == sop
        jpeg = client.get("/wado", params={**params, "rows": "64", "columns": "64"})
        assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(jpeg.content)).size == (64, 64)
        wrong = client.get("/wado", params={**params, "requestType": "OTHER"})
        assert wrong.status_code == 400
        missing = client.get("/wado", params={"requestType": "WADO", "studyUID": study})
        assert missing.status_code == 400
