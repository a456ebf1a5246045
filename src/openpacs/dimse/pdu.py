"""PDU framing of the DICOM upper layer (PS3.8 9.3) on a blocking TCP socket.

Association PDUs (A-ASSOCIATE-RQ/AC/RJ, A-RELEASE, A-ABORT) are encoded and decoded by
pynetdicom's PDU classes; this module only frames them, and handles P-DATA-TF (PS3.8
9.3.5) itself: presentation data values are sliced without copying, and a message is
sent with ``sendmsg`` as a list of buffers so that a large data set is never copied.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

_HEADER = struct.Struct(">BxL")
_PDV_HEADER = struct.Struct(">LBB")
_MAX_IOV = 512


class ProtocolError(Exception):
    """The peer broke the upper layer protocol (PS3.8 9.3)."""


class ConnectionClosed(Exception):
    """The peer closed the connection."""


@dataclass(frozen=True)
class Pdv:
    """A presentation data value (PS3.8 9.3.5.1): a fragment of a command or data set."""

    context_id: int
    is_command: bool
    is_last: bool
    data: memoryview


def tune_socket(sock: socket.socket) -> None:
    """TCP_NODELAY on every DICOM socket: small DIMSE messages must not wait (Nagle)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PduSocket:
    """Reads and writes PDUs on one connection."""

    def __init__(self, sock: socket.socket, *, max_receive: int) -> None:
        self.sock = sock
        self.max_receive = max_receive
        self._header = bytearray(6)

    def _recv_exact(self, view: memoryview) -> None:
        while view:
            got = self.sock.recv_into(view)
            if got == 0:
                raise ConnectionClosed("the peer closed the connection")
            view = view[got:]

    def read_pdu(self) -> tuple[int, memoryview]:
        """The next PDU's type and body."""
        header = memoryview(self._header)
        got = self.sock.recv_into(header)
        if got == 0:
            raise ConnectionClosed("the peer closed the connection")
        if got < 6:
            self._recv_exact(header[got:])
        pdu_type, length = _HEADER.unpack(self._header)
        if pdu_type not in (1, 2, 3, 4, 5, 6, 7):
            raise ProtocolError(f"unrecognised PDU type 0x{pdu_type:02X}")
        limit = self.max_receive + 6 if pdu_type == P_DATA_TF and self.max_receive else 1 << 26
        if length > limit:
            raise ProtocolError(f"PDU of {length} bytes exceeds the maximum of {self.max_receive}")
        body = bytearray(length)
        self._recv_exact(memoryview(body))
        return pdu_type, memoryview(body)

    def send(self, data: bytes) -> None:
        """Send an encoded PDU."""
        self.sock.sendall(data)

    def send_buffers(self, buffers: list[bytes | memoryview]) -> None:
        """Send buffers with as few system calls as possible, without joining them."""
        while buffers:
            chunk = buffers[:_MAX_IOV]
            sent = self.sock.sendmsg(chunk)
            total = sum(len(b) for b in chunk)
            if sent == total:
                buffers = buffers[_MAX_IOV:]
                continue
            # partial send: drop what went out, keep the rest
            rest: list[bytes | memoryview] = []
            for buffer in chunk:
                if sent >= len(buffer):
                    sent -= len(buffer)
                    continue
                rest.append(memoryview(buffer)[sent:])
                sent = 0
            buffers = rest + buffers[_MAX_IOV:]

    def close(self) -> None:
        """Close the socket."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def parse_pdvs(body: memoryview) -> Iterator[Pdv]:
    """The presentation data values of a P-DATA-TF body."""
    pos = 0
    end = len(body)
    while pos < end:
        if pos + 6 > end:
            raise ProtocolError("truncated presentation data value item")
        length, context_id, header = _PDV_HEADER.unpack_from(body, pos)
        if length < 2 or pos + 4 + length > end:
            raise ProtocolError("presentation data value item length is invalid")
        yield Pdv(context_id, bool(header & 0x01), bool(header & 0x02), body[pos + 6 : pos + 4 + length])
        pos += 4 + length


def p_data_buffers(
    context_id: int, is_command: bool, data: bytes | memoryview, max_pdu: int
) -> list[bytes | memoryview]:
    """P-DATA-TF PDUs (as buffers) carrying one command or data set in fragments.

    *max_pdu* is the peer's Maximum Length (PS3.8 D.1), 0 for unlimited.
    """
    view = memoryview(data)
    fragment = (max_pdu - 6) if max_pdu else 1 << 24
    fragment = max(fragment, 1)
    buffers: list[bytes | memoryview] = []
    base = 0x01 if is_command else 0x00
    total = len(view)
    pos = 0
    while True:
        piece = view[pos : pos + fragment]
        pos += len(piece)
        last = pos >= total
        header = base | (0x02 if last else 0x00)
        buffers.append(_HEADER.pack(P_DATA_TF, len(piece) + 6) + _PDV_HEADER.pack(len(piece) + 2, context_id, header))
        if piece:
            buffers.append(piece)
        if last:
            return buffers


def release_rq() -> bytes:
    """An A-RELEASE-RQ PDU."""
    return _HEADER.pack(A_RELEASE_RQ, 4) + b"\x00\x00\x00\x00"


def release_rp() -> bytes:
    """An A-RELEASE-RP PDU."""
    return _HEADER.pack(A_RELEASE_RP, 4) + b"\x00\x00\x00\x00"


def abort(source: int = 0x02, reason: int = 0x00) -> bytes:
    """An A-ABORT PDU (PS3.8 9.3.8): source 0 service user, 2 service provider."""
    return _HEADER.pack(A_ABORT, 4) + bytes((0, 0, source, reason))
