"""DIMSE command sets (PS3.7 Annex E): group 0000, always Implicit VR Little Endian.

A command is a plain dict from keyword to value, encoded with the group length first
and elements in tag order (PS3.7 6.3.1).
"""

from __future__ import annotations

import struct
from typing import Any

# keyword -> (tag, VR)
FIELDS: dict[str, tuple[int, str]] = {
    "AffectedSOPClassUID": (0x00000002, "UI"),
    "RequestedSOPClassUID": (0x00000003, "UI"),
    "CommandField": (0x00000100, "US"),
    "MessageID": (0x00000110, "US"),
    "MessageIDBeingRespondedTo": (0x00000120, "US"),
    "MoveDestination": (0x00000600, "AE"),
    "Priority": (0x00000700, "US"),
    "CommandDataSetType": (0x00000800, "US"),
    "Status": (0x00000900, "US"),
    "OffendingElement": (0x00000901, "AT"),
    "ErrorComment": (0x00000902, "LO"),
    "ErrorID": (0x00000903, "US"),
    "AffectedSOPInstanceUID": (0x00001000, "UI"),
    "RequestedSOPInstanceUID": (0x00001001, "UI"),
    "EventTypeID": (0x00001002, "US"),
    "AttributeIdentifierList": (0x00001005, "AT"),
    "ActionTypeID": (0x00001008, "US"),
    "NumberOfRemainingSuboperations": (0x00001020, "US"),
    "NumberOfCompletedSuboperations": (0x00001021, "US"),
    "NumberOfFailedSuboperations": (0x00001022, "US"),
    "NumberOfWarningSuboperations": (0x00001023, "US"),
    "MoveOriginatorApplicationEntityTitle": (0x00001030, "AE"),
    "MoveOriginatorMessageID": (0x00001031, "US"),
}
_BY_TAG = {tag: (keyword, vr) for keyword, (tag, vr) in FIELDS.items()}

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_GET_RQ = 0x0010
C_GET_RSP = 0x8010
C_FIND_RQ = 0x0020
C_FIND_RSP = 0x8020
C_MOVE_RQ = 0x0021
C_MOVE_RSP = 0x8021
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
C_CANCEL_RQ = 0x0FFF
N_EVENT_REPORT_RQ = 0x0100
N_EVENT_REPORT_RSP = 0x8100
N_GET_RQ = 0x0110
N_GET_RSP = 0x8110
N_SET_RQ = 0x0120
N_SET_RSP = 0x8120
N_ACTION_RQ = 0x0130
N_ACTION_RSP = 0x8130
N_CREATE_RQ = 0x0140
N_CREATE_RSP = 0x8140

NO_DATA_SET = 0x0101
HAS_DATA_SET = 0x0000

NAMES = {
    C_STORE_RQ: "C-STORE-RQ",
    C_STORE_RSP: "C-STORE-RSP",
    C_GET_RQ: "C-GET-RQ",
    C_GET_RSP: "C-GET-RSP",
    C_FIND_RQ: "C-FIND-RQ",
    C_FIND_RSP: "C-FIND-RSP",
    C_MOVE_RQ: "C-MOVE-RQ",
    C_MOVE_RSP: "C-MOVE-RSP",
    C_ECHO_RQ: "C-ECHO-RQ",
    C_ECHO_RSP: "C-ECHO-RSP",
    C_CANCEL_RQ: "C-CANCEL-RQ",
    N_EVENT_REPORT_RQ: "N-EVENT-REPORT-RQ",
    N_EVENT_REPORT_RSP: "N-EVENT-REPORT-RSP",
    N_GET_RQ: "N-GET-RQ",
    N_GET_RSP: "N-GET-RSP",
    N_SET_RQ: "N-SET-RQ",
    N_SET_RSP: "N-SET-RSP",
    N_ACTION_RQ: "N-ACTION-RQ",
    N_ACTION_RSP: "N-ACTION-RSP",
    N_CREATE_RQ: "N-CREATE-RQ",
    N_CREATE_RSP: "N-CREATE-RSP",
}

_ELEMENT = struct.Struct("<HHL")


class CommandError(Exception):
    """A command set that cannot be decoded."""


def _encode_value(vr: str, value: Any) -> bytes:
    if vr == "US":
        return struct.pack("<H", int(value) & 0xFFFF)
    if vr == "AT":
        tags = value if isinstance(value, list | tuple) else [value]
        return b"".join(struct.pack("<HH", t >> 16, t & 0xFFFF) for t in tags)
    raw = str(value).encode("ascii", "replace")
    if vr == "UI":
        return raw + b"\x00" if len(raw) % 2 else raw
    if vr == "LO":
        raw = raw[:64]
    if vr == "AE":
        raw = raw[:16]
    return raw + b" " if len(raw) % 2 else raw


def encode_command(fields: dict[str, Any]) -> bytes:
    """Encode a command set; ``CommandDataSetType`` defaults to 'no data set'."""
    fields = {"CommandDataSetType": NO_DATA_SET, **fields}
    parts: list[tuple[int, bytes]] = []
    for keyword, value in fields.items():
        if value is None:
            continue
        tag, vr = FIELDS[keyword]
        parts.append((tag, _encode_value(vr, value)))
    parts.sort()
    body = b"".join(_ELEMENT.pack(0, tag & 0xFFFF, len(raw)) + raw for tag, raw in parts)
    return _ELEMENT.pack(0, 0, 4) + struct.pack("<L", len(body)) + body


def decode_command(data: bytes | memoryview) -> dict[str, Any]:
    """Decode a command set into a dict of keyword -> value (unknown elements are skipped)."""
    out: dict[str, Any] = {}
    pos, end = 0, len(data)
    while pos < end:
        if pos + 8 > end:
            raise CommandError("truncated command set")
        group, elem, length = _ELEMENT.unpack_from(data, pos)
        pos += 8
        if group != 0 and out:
            # DCMTK's C-GET SCP puts the Failed SOP Instance UID List (0008,0058) after the
            # command elements of a pending C-GET-RSP: not part of the command, ignored
            break
        if group != 0 or pos + length > end:
            raise CommandError("malformed command set")
        known = _BY_TAG.get(elem)
        raw = bytes(data[pos : pos + length])
        pos += length
        if known is None:
            continue
        keyword, vr = known
        if vr == "US":
            if length != 2:
                raise CommandError(f"{keyword} has length {length}")
            out[keyword] = struct.unpack("<H", raw)[0]
        elif vr == "AT":
            out[keyword] = [
                struct.unpack_from("<H", raw, i)[0] << 16 | struct.unpack_from("<H", raw, i + 2)[0]
                for i in range(0, length - 3, 4)
            ]
        else:
            out[keyword] = raw.decode("ascii", "replace").strip(" \x00")
    if "CommandField" not in out:
        raise CommandError("the command set has no Command Field")
    return out


def has_data_set(command: dict[str, Any]) -> bool:
    """Whether a data set follows the command (PS3.7 E.1: CommandDataSetType != 0101H)."""
    return int(command.get("CommandDataSetType", NO_DATA_SET)) != NO_DATA_SET
