"""The MLLP sender (HL7 v2.5.1 Appendix C): one connection, each message framed and written in
one send (TCP_NODELAY), its ACK read back before the next message goes."""

from __future__ import annotations

import socket
import time

from openpacs.domain.hl7 import AckResult, check_ack, header
from openpacs.hl7.mllp import FrameDecoder, frame


class MllpClient:
    """Sends messages to one HL7 receiver and checks their ACKs."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0, max_ack_bytes: int = 1 << 20) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._decoder = FrameDecoder(max_ack_bytes)
        self._sock: socket.socket | None = None
        self._frames: list[bytes] = []

    def connect(self) -> None:
        self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _read_frame(self, deadline: float) -> bytes:
        assert self._sock is not None
        while not self._frames:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no ACK from {self.host}:{self.port} within {self.timeout:.0f} s")
            self._sock.settimeout(left)
            data = self._sock.recv(1 << 16)
            if not data:
                raise ConnectionError(f"{self.host}:{self.port} closed the connection before its ACK")
            for found in self._decoder.feed(data):
                if not found.truncated and not found.too_large:
                    self._frames.append(found.data)
        return self._frames.pop(0)

    def send(self, message: bytes) -> AckResult:
        """Send one message and wait for its ACK (and for the application ACK when MSH-16 asks
        for one and the receiver answered with a commit ACK first)."""
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        sent = header(message)
        self._sock.sendall(frame(message))
        deadline = time.monotonic() + self.timeout
        result = check_ack(sent, self._read_frame(deadline))
        while result.waiting:
            result = check_ack(sent, self._read_frame(deadline))
        return result


class MllpPeer:
    """The Hl7Peer port over MLLP connections."""

    def connect(self, host: str, port: int, *, timeout: float) -> MllpClient:
        client = MllpClient(host, port, timeout=timeout)
        client.connect()
        return client
