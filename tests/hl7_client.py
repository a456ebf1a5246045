"""Talking HL7 to a running test server: MLLP frames over a socket, and the message store."""

from __future__ import annotations

import socket
import time
from typing import Any

from conftest import ServerProcess
from web import accounts_of, http

START, END = b"\x0b", b"\x1c\x0d"


def send(server: ServerProcess, message: bytes, *, port: int | None = None) -> bytes:
    """One message framed on its own connection; the ACK frame's content."""
    with socket.create_connection(("127.0.0.1", port or server.hl7_port), timeout=30) as sock:
        sock.sendall(START + message.replace(b"\n", b"\r") + END)
        reply = b""
        while END not in reply:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    return reply


def stored(server: ServerProcess, control: str, timeout: float = 20) -> dict[str, Any]:
    """The stored message once the consumer has applied it (or left it waiting past *timeout*)."""
    deadline = time.monotonic() + timeout
    with http(server, accounts_of(server)["admin"]) as client:
        while True:
            (found,) = client.get("/api/hl7/messages", params={"control_id": control}).json()["messages"]
            if found["status"] != "received" or time.monotonic() > deadline:
                return dict(found)
            time.sleep(0.1)
