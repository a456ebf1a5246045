"""DIMSE command sets (PS3.7 E) and P-DATA framing (PS3.8 9.3.5) against pydicom's encoding."""

from __future__ import annotations

import io

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from openpacs.dimse import commands as cmd
from openpacs.dimse import pdu
from openpacs.domain import transfer_syntaxes as tsx


def _pydicom_command(fields: dict[str, object]) -> bytes:
    ds = Dataset()
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, True
    write_dataset(body, ds)
    group = Dataset()
    group.CommandGroupLength = len(body.getvalue())
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, True
    write_dataset(head, group)
    return head.getvalue() + body.getvalue()


def test_a_c_store_rsp_is_encoded_as_pydicom_would() -> None:
    fields = {
        "AffectedSOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
        "CommandField": cmd.C_STORE_RSP,
        "MessageIDBeingRespondedTo": 7,
        "CommandDataSetType": cmd.NO_DATA_SET,
        "Status": 0xA900,
        "ErrorComment": "the data set does not match",
        "AffectedSOPInstanceUID": "1.2.3.4.5",
    }
    assert cmd.encode_command(fields) == _pydicom_command(fields)


def test_commands_round_trip() -> None:
    fields = {
        "CommandField": cmd.C_MOVE_RQ,
        "MessageID": 3,
        "Priority": 0,
        "MoveDestination": "DEST",
        "AffectedSOPClassUID": "1.2.840.10008.5.1.4.1.2.2.2",
        "CommandDataSetType": 0,
    }
    decoded = cmd.decode_command(cmd.encode_command(fields))
    assert decoded == fields
    assert cmd.has_data_set(decoded)


def test_malformed_commands_are_refused() -> None:
    with pytest.raises(cmd.CommandError):
        cmd.decode_command(b"\x00\x00\x00\x01")
    with pytest.raises(cmd.CommandError):
        cmd.decode_command(cmd.encode_command({"MessageID": 1})[:-1] + b"")  # no Command Field
    with pytest.raises(cmd.CommandError):
        cmd.decode_command(b"\x08\x00\x10\x00\x02\x00\x00\x00AB")  # not group 0000


@pytest.mark.parametrize("max_pdu", [0, 16384, 4096])
def test_p_data_fragments_reassemble(max_pdu: int) -> None:
    payload = bytes(range(256)) * 300
    buffers = pdu.p_data_buffers(3, False, payload, max_pdu)
    stream = b"".join(bytes(b) for b in buffers)
    pieces, last = [], False
    reader = io.BytesIO(stream)
    while True:
        header = reader.read(6)
        if not header:
            break
        assert header[0] == pdu.P_DATA_TF
        length = int.from_bytes(header[2:6], "big")
        assert max_pdu == 0 or length <= max_pdu
        for pdv in pdu.parse_pdvs(memoryview(reader.read(length))):
            assert pdv.context_id == 3 and not pdv.is_command
            pieces.append(bytes(pdv.data))
            last = pdv.is_last
    assert last and b"".join(pieces) == payload


def test_truncated_pdv_is_a_protocol_error() -> None:
    with pytest.raises(pdu.ProtocolError):
        list(pdu.parse_pdvs(memoryview(b"\x00\x00\x00\x10\x01\x03abc")))


@pytest.mark.parametrize(
    ("stored", "accepted", "chosen"),
    [
        (tsx.JPEG_LS_LOSSLESS, (tsx.JPEG_LS_LOSSLESS, tsx.EXPLICIT_LE), tsx.JPEG_LS_LOSSLESS),
        (tsx.JPEG_LS_LOSSLESS, (tsx.IMPLICIT_LE,), tsx.IMPLICIT_LE),
        (tsx.EXPLICIT_LE, (tsx.RLE_LOSSLESS,), tsx.RLE_LOSSLESS),
        (tsx.JPEG_BASELINE, (tsx.RLE_LOSSLESS,), None),  # never re-encode lossy pixels
        (tsx.JPEG_BASELINE, (tsx.EXPLICIT_LE,), tsx.EXPLICIT_LE),
        (tsx.EXPLICIT_LE, (tsx.JPEG_BASELINE,), None),  # never lossy under the original UID
    ],
)
def test_transfer_syntax_choice(stored: str, accepted: tuple[str, ...], chosen: str | None) -> None:
    assert tsx.choose(stored, accepted) == chosen


def test_elements_of_another_group_after_the_command_are_ignored() -> None:
    """DCMTK's C-GET SCP appends (0008,0058) to a pending C-GET-RSP's command set."""
    command = cmd.encode_command({"CommandField": cmd.C_GET_RSP, "MessageIDBeingRespondedTo": 1, "Status": 0xFF00})
    trailing = b"\x08\x00\x58\x00\x04\x00\x00\x001.23"
    decoded = cmd.decode_command(command + trailing)
    assert decoded["CommandField"] == cmd.C_GET_RSP and decoded["Status"] == 0xFF00
