"""The data transfer phase of an established association (PS3.8 Sta6, PS3.7 DIMSE messages).

Shared by the acceptor (our SCPs) and the requestor (our SCUs): send and receive
whole DIMSE messages, release and abort. One thread drives an association; messages
are not interleaved (no asynchronous operations are negotiated).
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openpacs.dimse import pdu
from openpacs.dimse.commands import CommandError, decode_command, encode_command, has_data_set


@dataclass(frozen=True)
class Context:
    """An accepted presentation context (PS3.8 7.1.1.13) and our roles on it."""

    id: int
    abstract_syntax: str
    transfer_syntax: str
    as_scu: bool
    as_scp: bool


@dataclass
class Message:
    """A complete DIMSE message: its command and, when present, its data set bytes."""

    context_id: int
    command: dict[str, Any]
    data: bytes | None = None


class ReleaseRequested(Exception):
    """The peer asked to release the association (A-RELEASE-RQ)."""


class Aborted(Exception):
    """The association was aborted (A-ABORT), or the connection broke."""


@dataclass
class AssociationInfo:
    """Who is on the other side."""

    calling_ae: str
    called_ae: str
    address: str
    port: int
    peer_max_pdu: int
    implementation_class_uid: str = ""
    implementation_version: str = ""


@dataclass
class Association:
    """An established association over a PduSocket."""

    pdus: pdu.PduSocket
    info: AssociationInfo
    contexts: dict[int, Context]
    _message_id: int = field(default=0)

    def next_message_id(self) -> int:
        """A fresh Message ID for a request we send (PS3.7 9.3.1.1)."""
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def contexts_for(self, abstract_syntax: str) -> list[Context]:
        """Accepted contexts of an abstract syntax."""
        return [c for c in self.contexts.values() if c.abstract_syntax == abstract_syntax]

    def send(self, context_id: int, command: dict[str, Any], data: bytes | memoryview | None = None) -> None:
        """Send a DIMSE message: the command, then the data set (if any), fragmented to the peer's PDU size."""
        if data is not None:
            command = {**command, "CommandDataSetType": 0x0000}
        max_pdu = self.info.peer_max_pdu
        buffers = pdu.p_data_buffers(context_id, True, encode_command(command), max_pdu)
        if data is not None:
            buffers += pdu.p_data_buffers(context_id, False, data, max_pdu)
        try:
            self.pdus.send_buffers(buffers)
        except TimeoutError:
            raise
        except OSError as exc:
            raise Aborted(f"connection lost while sending: {exc}") from exc

    def receive(self, prefix: Callable[[int, dict[str, Any]], bytes] | None = None) -> Message:
        """The next complete message. *prefix(context_id, command)* gives bytes put before the data set.

        Raises ReleaseRequested, Aborted, TimeoutError (network timeout), or pdu.ProtocolError.
        """
        command_parts: list[memoryview] = []
        data_parts: list[bytes | memoryview] = []
        command: dict[str, Any] | None = None
        context_id = -1
        while True:
            try:
                pdu_type, body = self.pdus.read_pdu()
            except TimeoutError:
                raise
            except (pdu.ConnectionClosed, OSError) as exc:
                raise Aborted(f"connection lost: {exc}") from exc
            if pdu_type == pdu.A_RELEASE_RQ:
                raise ReleaseRequested
            if pdu_type == pdu.A_ABORT:
                raise Aborted("the peer aborted the association")
            if pdu_type != pdu.P_DATA_TF:
                raise pdu.ProtocolError(f"unexpected PDU type 0x{pdu_type:02X} in data transfer")
            for pdv in pdu.parse_pdvs(body):
                if pdv.context_id not in self.contexts:
                    raise pdu.ProtocolError(f"presentation context {pdv.context_id} was not accepted")
                if context_id == -1:
                    context_id = pdv.context_id
                elif pdv.context_id != context_id:
                    raise pdu.ProtocolError("fragments of one message on different presentation contexts")
                if pdv.is_command:
                    if command is not None:
                        raise pdu.ProtocolError("command fragment after the command was complete")
                    command_parts.append(pdv.data)
                    if pdv.is_last:
                        try:
                            command = decode_command(b"".join(command_parts))
                        except CommandError as exc:
                            raise pdu.ProtocolError(str(exc)) from exc
                        if not has_data_set(command):
                            return Message(context_id, command)
                        if prefix is not None:
                            data_parts.append(prefix(context_id, command))
                else:
                    if command is None:
                        raise pdu.ProtocolError("data set fragment before its command")
                    data_parts.append(pdv.data)
                    if pdv.is_last:
                        return Message(context_id, command, b"".join(data_parts))

    def poll(self) -> Message | None:
        """A message if one is already waiting (used to notice C-CANCEL-RQ)."""
        readable, _, _ = select.select([self.pdus.sock], [], [], 0)
        if not readable:
            return None
        return self.receive()

    def send_release_rp(self) -> None:
        """Answer the peer's release request."""
        with contextlib.suppress(OSError):
            self.pdus.send(pdu.release_rp())

    def release(self, timeout: float = 10.0) -> None:
        """Release the association we requested (A-RELEASE-RQ, wait for RP)."""
        try:
            self.pdus.send(pdu.release_rq())
            self.pdus.sock.settimeout(timeout)
            while True:
                pdu_type, _ = self.pdus.read_pdu()
                if pdu_type in (pdu.A_RELEASE_RP, pdu.A_ABORT):
                    break
                if pdu_type == pdu.A_RELEASE_RQ:  # release collision (PS3.8 7.2.2.2)
                    self.pdus.send(pdu.release_rp())
        except (OSError, pdu.ConnectionClosed, pdu.ProtocolError):
            pass
        finally:
            self.pdus.close()

    def abort(self, reason: int = 0x00) -> None:
        """Abort the association (A-ABORT from the service provider)."""
        with contextlib.suppress(OSError):
            self.pdus.send(pdu.abort(0x02, reason))
        self.pdus.close()
