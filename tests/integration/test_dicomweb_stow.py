"""STOW-RS (PS3.18 10.5) with dicomweb-client and raw bodies: the status codes of
Table 10.5.3-1, failure reasons, streaming of large bodies, and malformed input."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from conftest import ServerProcess
from web import Account, accounts_of, dicomweb, http

BOUNDARY = "stow-test-boundary"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def _ct(**changes: object) -> pydicom.Dataset:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def _bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _body(*parts: bytes, content_type: str = "application/dicom") -> bytes:
    out = b""
    for part in parts:
        out += f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n".encode() + part + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


@pytest.fixture(scope="module")
def technologist(sqlite_server: ServerProcess) -> Account:
    return accounts_of(sqlite_server)["technologist"]


def _post(server: ServerProcess, account: Account, body: bytes | Iterator[bytes], **headers: str) -> tuple[int, dict]:
    with http(server, account) as client:
        response = client.post(
            headers.pop("url", "/dicom-web/studies"), content=body, headers={"Content-Type": CONTENT_TYPE, **headers}
        )
    payload = response.json() if response.content else {}
    return response.status_code, payload


def _stored(server: ServerProcess, account: Account, sop: str) -> bool:
    return bool(dicomweb(server, account).search_for_instances(search_filters={"SOPInstanceUID": sop}))


def test_dicomweb_client_stores_and_gets_references(sqlite_server: ServerProcess, technologist: Account) -> None:
    datasets = [_ct(), _ct()]
    answer = dicomweb(sqlite_server, technologist).store_instances(datasets)
    references = answer.ReferencedSOPSequence
    assert [r.ReferencedSOPInstanceUID for r in references] == [d.SOPInstanceUID for d in datasets]
    assert all(r.RetrieveURL.startswith(sqlite_server.base_url + "/dicom-web/studies/") for r in references)
    assert "FailedSOPSequence" not in answer


def test_200_when_everything_is_stored(sqlite_server: ServerProcess, technologist: Account) -> None:
    ds = _ct()
    status, payload = _post(sqlite_server, technologist, _body(_bytes(ds)))
    assert status == 200
    assert payload["00081199"]["Value"][0]["00081155"]["Value"] == [ds.SOPInstanceUID]
    assert _stored(sqlite_server, technologist, ds.SOPInstanceUID)


def test_202_when_some_parts_fail_with_their_reason(sqlite_server: ServerProcess, technologist: Account) -> None:
    good, bad = _ct(), _ct()
    broken = _bytes(bad)[:400]  # truncated in its header
    status, payload = _post(sqlite_server, technologist, _body(_bytes(good), broken))
    assert status == 202
    (stored,) = payload["00081199"]["Value"]
    assert stored["00081155"]["Value"] == [good.SOPInstanceUID]
    (failed,) = payload["00081198"]["Value"]
    assert failed["00081197"]["Value"][0] in (0xA900, 0xC000)  # Failure Reason
    assert not _stored(sqlite_server, technologist, bad.SOPInstanceUID)


def test_202_with_a_warning_for_coerced_demographics(sqlite_server: ServerProcess, technologist: Account) -> None:
    first = _ct(PatientID="STOW-W1", PatientName="Right^Name")
    _post(sqlite_server, technologist, _body(_bytes(first)))
    second = _ct(PatientID="STOW-W1", PatientName="Wrong^Name", StudyInstanceUID=first.StudyInstanceUID)
    status, payload = _post(sqlite_server, technologist, _body(_bytes(second)))
    assert status == 202
    (stored,) = payload["00081199"]["Value"]
    assert stored["00081196"]["Value"] == [0xB000]  # Warning Reason: coercion of data elements


def test_400_when_nothing_is_stored_for_bad_syntax(sqlite_server: ServerProcess, technologist: Account) -> None:
    status, payload = _post(sqlite_server, technologist, _body(b"this is not DICOM at all" * 10))
    assert status == 400
    assert payload["00081198"]["Value"][0]["00081197"]["Value"]


def test_409_when_nothing_is_stored_for_a_conflict(sqlite_server: ServerProcess, technologist: Account) -> None:
    ds = _ct()
    other_study = generate_uid()
    status, payload = _post(sqlite_server, technologist, _body(_bytes(ds)), url=f"/dicom-web/studies/{other_study}")
    assert status == 409
    (failed,) = payload["00081198"]["Value"]
    assert failed["00081155"]["Value"] == [ds.SOPInstanceUID]
    assert failed["00081197"]["Value"] == [0xA900]
    assert not _stored(sqlite_server, technologist, ds.SOPInstanceUID)
    status, payload = _post(
        sqlite_server, technologist, _body(_bytes(ds)), url=f"/dicom-web/studies/{ds.StudyInstanceUID}"
    )
    assert status == 200
    assert payload["00081190"]["Value"][0].endswith(f"/dicom-web/studies/{ds.StudyInstanceUID}")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "multipart/form-data; boundary=x",
        'multipart/related; type="application/dicom+xml"; boundary=x',
        'multipart/related; type="application/dicom"',  # no boundary
        "",
    ],
)
def test_415_for_unsupported_media_types(
    sqlite_server: ServerProcess, technologist: Account, content_type: str
) -> None:
    with http(sqlite_server, technologist) as client:
        response = client.post(
            "/dicom-web/studies", content=_body(_bytes(_ct())), headers={"Content-Type": content_type}
        )
    assert response.status_code == 415
    assert response.json()["error"]


def test_a_part_of_the_wrong_media_type_fails_alone(sqlite_server: ServerProcess, technologist: Account) -> None:
    body = (
        (
            f"--{BOUNDARY}\r\nContent-Type: text/html\r\n\r\n<script>alert(1)</script>\r\n"
            f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n"
        ).encode()
        + _bytes(_ct())
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    status, payload = _post(sqlite_server, technologist, body)
    assert status == 202
    assert len(payload["00081198"]["Value"]) == 1 and len(payload["00081199"]["Value"]) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"no boundary anywhere in this body",
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n".encode(),  # cut in the part headers
        f"--{BOUNDARY}\r\n" + "X-Header: y\r\n" * 5000,  # endless part headers
    ],
    ids=["empty", "no-boundary", "truncated-headers", "header-flood"],
)
def test_malformed_multipart_bodies_get_400_and_store_nothing(
    sqlite_server: ServerProcess, technologist: Account, body: bytes | str
) -> None:
    before = len(dicomweb(sqlite_server, technologist).search_for_instances())
    data = body.encode() if isinstance(body, str) else body
    status, payload = _post(sqlite_server, technologist, data)
    assert status == 400
    assert payload.get("error") or payload.get("00081198")
    assert len(dicomweb(sqlite_server, technologist).search_for_instances()) == before
    with http(sqlite_server) as client:
        assert client.get("/health").status_code == 200


def test_a_large_upload_is_streamed_instance_by_instance(sqlite_server: ServerProcess, technologist: Account) -> None:
    """60 instances of about 0.5 MB in one chunked request: the server stores them as they come."""
    study = generate_uid()
    datasets = []
    for n in range(60):
        ds = _ct(StudyInstanceUID=study, InstanceNumber=n + 1)
        ds.PixelData = bytes([n % 251]) * (512 * 512 * 2)
        ds.Rows = ds.Columns = 512
        datasets.append(ds)

    def chunks() -> Iterator[bytes]:
        for ds in datasets:
            yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            data = _bytes(ds)
            for start in range(0, len(data), 65536):
                yield data[start : start + 65536]
            yield b"\r\n"
        yield f"--{BOUNDARY}--\r\n".encode()

    status, payload = _post(sqlite_server, technologist, chunks())
    assert status == 200
    assert len(payload["00081199"]["Value"]) == 60
    found = dicomweb(sqlite_server, technologist).search_for_instances(study_instance_uid=study)
    assert len(found) == 60


def test_an_announced_body_over_the_limit_is_refused_before_reading(
    sqlite_server: ServerProcess, technologist: Account
) -> None:
    request = (
        f"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {technologist.token}\r\n"
        f"Content-Type: {CONTENT_TYPE}\r\nContent-Length: {10**15}\r\n\r\n"
    ).encode() + b"x" * 1024
    with socket.create_connection(("127.0.0.1", sqlite_server.http_port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while b"max_stow_bytes" not in received and (chunk := connection.recv(65536)):
            received += chunk  # the head and the body may arrive in separate segments
    answer = received.decode("latin-1")
    assert answer.startswith("HTTP/1.1 413")
    assert "max_stow_bytes" in answer


def test_roles_without_the_store_right_get_403(sqlite_server: ServerProcess) -> None:
    viewer = accounts_of(sqlite_server)["viewer"]
    status, payload = _post(sqlite_server, viewer, _body(_bytes(_ct())))
    assert status == 403
    assert "may not" in payload["error"]
