"""C-STORE into a real `openpacs serve` with DCMTK and pynetdicom; hostile input on the door."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from conftest import ServerProcess, run_dcmtk
from dimse_client import c_echo, c_get
from openpacs.dimse import commands as cmd
from openpacs.dimse import pdu
from openpacs.dimse.association import Association
from openpacs.dimse.negotiation import request
from openpacs.domain.part10 import parse_part10
from openpacs.services.outbound import dataset_offset
from samples import BY_TRANSFER_SYNTAX, sample_file

pytestmark = pytest.mark.usefixtures("dcmtk")


def test_echoscu(server: ServerProcess) -> None:
    result = run_dcmtk("echoscu", "-v", "-aec", "OPENPACS", "127.0.0.1", str(server.dicom_port))
    assert "Received Echo Response (Success)" in result.stdout + result.stderr
    log = server.wait_for_log("ECHOSCU@127.0.0.1", "C-ECHO 1")
    assert "ECHOSCU@127.0.0.1" in log and "C-ECHO 1" in log


#: storescu's option that proposes each transfer syntax, so that it sends the file as it is
_PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.5": "-xr",
}


def _unique_copy(name: str, directory: Path) -> Path:
    """The sample with a SOP Instance UID of its own (pydicom's samples share theirs)."""
    ds = pydicom.dcmread(sample_file(name))
    uid = generate_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    path = directory / name
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(("name", "syntax"), BY_TRANSFER_SYNTAX, ids=[n for n, _ in BY_TRANSFER_SYNTAX])
def test_storescu_every_transfer_syntax_and_get_back_byte_exact(
    server: ServerProcess, name: str, syntax: str, tmp_path: Path
) -> None:
    path = _unique_copy(name, tmp_path)
    result = run_dcmtk(
        "storescu", "-v", _PROPOSE[syntax], "-aec", "OPENPACS", "127.0.0.1", str(server.dicom_port), str(path)
    )
    output = result.stdout + result.stderr
    assert "Received Store Response (Success)" in output, output
    original = pydicom.dcmread(path)
    # retrieve it in its stored syntax: element by element equal, pixel data byte for byte
    got = c_get(
        server.dicom_port,
        original.StudyInstanceUID,
        [original.SOPClassUID],
        [syntax],
        series_uid=original.SeriesInstanceUID,
        sop_instance_uid=original.SOPInstanceUID,
    )
    assert got.final_status == 0x0000
    (received,) = [d for d in got.received if d.SOPInstanceUID == original.SOPInstanceUID]
    assert got.received_syntaxes[got.received.index(received)] == syntax
    for element in original:
        if element.tag == 0xFFFCFFFC:
            continue  # Data Set Trailing Padding: storescu does not send it
        assert received[element.tag].value == element.value, element.keyword
    assert received.PixelData == original.PixelData


def test_get_transcodes_losslessly_to_what_the_peer_accepts(server: ServerProcess, tmp_path: Path) -> None:
    path = _unique_copy("MR_small_jpeg_ls_lossless.dcm", tmp_path)
    run_dcmtk("storescu", "-xt", "-aec", "OPENPACS", "127.0.0.1", str(server.dicom_port), str(path))
    original = pydicom.dcmread(path)
    for syntax in ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2", "1.2.840.10008.1.2.5"):
        got = c_get(
            server.dicom_port,
            original.StudyInstanceUID,
            [original.SOPClassUID],
            [syntax],
            series_uid=original.SeriesInstanceUID,
            sop_instance_uid=original.SOPInstanceUID,
        )
        (received,) = [d for d in got.received if d.SOPInstanceUID == original.SOPInstanceUID]
        assert got.received_syntaxes[got.received.index(received)] == syntax
        assert (received.pixel_array == original.pixel_array).all()
        assert received.SOPInstanceUID == original.SOPInstanceUID


def test_lossy_instances_are_never_reencoded_losslessly(server: ServerProcess, tmp_path: Path) -> None:
    path = _unique_copy("SC_rgb_jpeg_dcmtk.dcm", tmp_path)
    run_dcmtk("storescu", "-xy", "-aec", "OPENPACS", "127.0.0.1", str(server.dicom_port), str(path))
    original = pydicom.dcmread(path)
    # a peer that only takes RLE: refused as a failed sub-operation, not re-encoded
    image = {"series_uid": original.SeriesInstanceUID, "sop_instance_uid": original.SOPInstanceUID}
    got = c_get(server.dicom_port, original.StudyInstanceUID, [original.SOPClassUID], ["1.2.840.10008.1.2.5"], **image)
    assert not got.received
    assert got.final_status in (0xA702, 0xB000)
    # a peer that takes uncompressed gets the decoded (still lossy-flagged) pixels
    got = c_get(server.dicom_port, original.StudyInstanceUID, [original.SOPClassUID], ["1.2.840.10008.1.2.1"], **image)
    (received,) = got.received
    assert received.LossyImageCompression == "01" if "LossyImageCompression" in original else True


def test_stored_file_is_byte_exact_with_synthesised_meta(sqlite_server: ServerProcess) -> None:
    path = sample_file("MR_small_bigendian.dcm")
    run_dcmtk(
        "storescu",
        "-xb",
        "-aec",
        "OPENPACS",
        "-aet",
        "MODALITY7",
        "127.0.0.1",
        str(sqlite_server.dicom_port),
        str(path),
    )
    original = path.read_bytes()
    body = original[parse_part10(original).dataset_offset :]
    stored = [p for p in (sqlite_server.data_dir / "storage").rglob("*.dcm") if p.read_bytes().endswith(body)]
    assert len(stored) == 1
    ds = pydicom.dcmread(stored[0])
    assert ds.file_meta.SourceApplicationEntityTitle == "MODALITY7"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"


def _raw_association(port: int, sop_class: str = "1.2.840.10008.5.1.4.1.1.2") -> Association:
    return request(
        "127.0.0.1",
        port,
        calling_ae="HOSTILE",
        called_ae="OPENPACS",
        contexts=[(sop_class, ("1.2.840.10008.1.2.1",))],
        max_pdu=65536,
        timeout=10,
    )


def _store_raw(assoc: Association, data: bytes, sop_class: str, sop_instance: str) -> tuple[int, str]:
    context = next(iter(assoc.contexts.values()))
    assoc.send(
        context.id,
        {
            "CommandField": cmd.C_STORE_RQ,
            "MessageID": assoc.next_message_id(),
            "AffectedSOPClassUID": sop_class,
            "AffectedSOPInstanceUID": sop_instance,
            "Priority": 0,
        },
        data,
    )
    reply = assoc.receive()
    return int(reply.command["Status"]), str(reply.command.get("ErrorComment", ""))


def _dataset_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    return data[dataset_offset(data) :]


def _ct(**changes: object) -> Dataset:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.SOPInstanceUID = changes.pop("SOPInstanceUID", "1.2.826.0.1.3680043.10.1151.99.1")
    for key, value in changes.items():
        setattr(ds, key, value)
    return ds


def test_bad_instances_get_the_right_status_and_the_association_stays_usable(server: ServerProcess) -> None:
    ct = "1.2.840.10008.5.1.4.1.1.2"
    assoc = _raw_association(server.dicom_port)
    try:
        good = _ct(SOPInstanceUID="1.2.826.0.1.3680043.10.1151.99.10")
        data = _dataset_bytes(good)
        # truncated in the middle of the pixel data
        assert _store_raw(assoc, data[: len(data) // 2], ct, good.SOPInstanceUID)[0] == 0xC000
        # truncated in the header
        status, comment = _store_raw(assoc, data[:301], ct, good.SOPInstanceUID)
        assert status == 0xC000
        assert "truncated" in comment or "has no" in comment
        # the data set's SOP Instance UID differs from the command's
        assert _store_raw(assoc, data, ct, "1.2.3.4.5")[0] == 0xA900
        # the data set's SOP Class UID differs from the command's
        assert _store_raw(assoc, data, "1.2.840.10008.5.1.4.1.1.4", good.SOPInstanceUID)[0] == 0xA900
        # no Study Instance UID
        missing = _ct(SOPInstanceUID="1.2.826.0.1.3680043.10.1151.99.11")
        del missing.StudyInstanceUID
        assert _store_raw(assoc, _dataset_bytes(missing), ct, missing.SOPInstanceUID)[0] == 0xC000
        # absurd nesting
        nested = _ct(SOPInstanceUID="1.2.826.0.1.3680043.10.1151.99.12")
        item = Dataset()
        item.CodeValue = "X"
        for _ in range(60):
            outer = Dataset()
            outer.ContentSequence = Sequence([item])
            item = outer
        nested.ContentSequence = item.ContentSequence
        assert _store_raw(assoc, _dataset_bytes(nested), ct, nested.SOPInstanceUID)[0] == 0xA700
        # garbage
        assert _store_raw(assoc, b"\xde\xad\xbe\xef" * 64, ct, good.SOPInstanceUID)[0] == 0xC000
        # and then a good one on the same association
        assert _store_raw(assoc, data, ct, good.SOPInstanceUID) == (0x0000, "")
    finally:
        assoc.release()
    # nothing from the bad ones reached the index
    result = run_dcmtk(
        "findscu",
        "-S",
        "-aec",
        "OPENPACS",
        "127.0.0.1",
        str(server.dicom_port),
        "-k",
        "QueryRetrieveLevel=IMAGE",
        "-k",
        f"StudyInstanceUID={good.StudyInstanceUID}",
        "-k",
        "SOPInstanceUID=1.2.826.0.1.3680043.10.1151.99.1*",
    )
    assert (result.stdout + result.stderr).count("(0008,0018)") == 0  # UI matching is literal: no wildcard
    assert c_echo(server.dicom_port) == 0


def test_unknown_private_storage_sop_class_is_stored(server: ServerProcess) -> None:
    private = "1.3.12.2.1107.5.9.1"  # a vendor's private non-image storage SOP class
    ds = _ct(SOPInstanceUID="1.2.826.0.1.3680043.10.1151.99.20", SOPClassUID=private)
    assoc = _raw_association(server.dicom_port, private)
    try:
        assert assoc.contexts, "the private SOP class was not accepted"
        assert _store_raw(assoc, _dataset_bytes(ds), private, ds.SOPInstanceUID)[0] == 0x0000
    finally:
        assoc.release()


def test_protocol_violations_abort_only_that_association(server: ServerProcess) -> None:
    import socket

    # a PDU type that does not exist, before any association
    with socket.create_connection(("127.0.0.1", server.dicom_port), timeout=10) as sock:
        sock.sendall(b"\x09\x00" + struct.pack(">L", 4) + b"abcd")
        reply = sock.recv(100)
        assert reply[:1] in (b"\x07", b"")  # A-ABORT, or closed
    # a malformed A-ASSOCIATE-RQ
    with socket.create_connection(("127.0.0.1", server.dicom_port), timeout=10) as sock:
        sock.sendall(b"\x01\x00" + struct.pack(">L", 10) + b"\x00\x01garbage!")
        assert sock.recv(100)[:1] in (b"\x07", b"")
    # an established association that then sends a PDU claiming to be huge
    assoc = _raw_association(server.dicom_port)
    assoc.pdus.sock.sendall(b"\x04\x00" + struct.pack(">L", 0x7FFFFFFF) + b"\x00" * 16)
    assert assoc.pdus.sock.recv(100)[:1] in (b"\x07", b"")
    assoc.pdus.close()
    # a P-DATA on a context that was never accepted
    assoc = _raw_association(server.dicom_port)
    assoc.pdus.send_buffers(
        pdu.p_data_buffers(99, True, cmd.encode_command({"CommandField": cmd.C_ECHO_RQ, "MessageID": 1}), 0)
    )
    assert assoc.pdus.sock.recv(100)[:1] in (b"\x07", b"")
    assoc.pdus.close()
    assert c_echo(server.dicom_port) == 0
    assert "protocol error" in server.wait_for_log("protocol error")


def test_corpus_with_dcmsend(server: ServerProcess, mixed_corpus: list[Path]) -> None:
    result = run_dcmtk(
        "dcmsend",
        "-v",
        "-aec",
        "OPENPACS",
        "127.0.0.1",
        str(server.dicom_port),
        *[str(p) for p in mixed_corpus],
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"with status SUCCESS  : {len(mixed_corpus)}" in output or "SUCCESS" in output
    stats = server.cli("stats", "--json").stdout
    assert '"instances"' in stats


def test_the_requestor_preferred_transfer_syntax_is_taken(server: ServerProcess) -> None:
    jpeg, explicit = "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.1"
    ct = "1.2.840.10008.5.1.4.1.1.2"
    for proposed in ((jpeg, explicit), (explicit, jpeg)):
        assoc = request(
            "127.0.0.1",
            server.dicom_port,
            calling_ae="PREFS",
            called_ae="OPENPACS",
            contexts=[(ct, proposed)],
            max_pdu=65536,
            timeout=10,
        )
        try:
            (context,) = assoc.contexts.values()
            assert context.transfer_syntax == proposed[0]
        finally:
            assoc.release()


def test_htj2k_is_accepted_and_stored_as_received(server: ServerProcess) -> None:
    """High-Throughput JPEG 2000 (PS3.5 A.4.11): accepted, stored and served byte for byte."""
    htj2k = "1.2.840.10008.1.2.4.201"
    ds = pydicom.dcmread(sample_file("MR_small_jp2klossless.dcm"))
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = htj2k
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    body = data[dataset_offset(data) :]
    assoc = request(
        "127.0.0.1",
        server.dicom_port,
        calling_ae="HTJ2K",
        called_ae="OPENPACS",
        contexts=[(str(ds.SOPClassUID), (htj2k,))],
        max_pdu=65536,
        timeout=10,
    )
    try:
        (context,) = assoc.contexts.values()
        assert context.transfer_syntax == htj2k
        assert _store_raw(assoc, body, str(ds.SOPClassUID), str(ds.SOPInstanceUID))[0] == 0x0000
    finally:
        assoc.release()
    got = c_get(
        server.dicom_port,
        ds.StudyInstanceUID,
        [str(ds.SOPClassUID)],
        [htj2k],
        series_uid=ds.SeriesInstanceUID,
        sop_instance_uid=ds.SOPInstanceUID,
    )
    (received,) = got.received
    assert got.received_syntaxes == [htj2k]
    assert received.PixelData == ds.PixelData
