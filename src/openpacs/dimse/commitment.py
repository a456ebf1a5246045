"""Storage Commitment Push Model as SCU (PS3.4 J.3): N-ACTION-RQ, and the N-EVENT-REPORT that
answers it, decoded from and encoded to the Event Information of PS3.4 J.3.3."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from openpacs.dimse import commands as cmd
from openpacs.dimse.association import Aborted, Association, ReleaseRequested
from openpacs.dimse.identifiers import decode_identifier, encode_identifier
from openpacs.dimse.negotiation import Requestor
from openpacs.dimse.pdu import ProtocolError
from openpacs.domain import dicom_json as dj
from openpacs.domain import transfer_syntaxes as tsx
from openpacs.domain.commitment import STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH, CommitmentResult
from openpacs.domain.errors import PeerError
from openpacs.ports.peers import PeerAddress

log = logging.getLogger("openpacs.dimse")

_TRANSACTION_UID = "00081195"
_REFERENCED_SOP_SEQUENCE = "00081199"
_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_CLASS = "00081150"
_REFERENCED_SOP_INSTANCE = "00081155"
_FAILURE_REASON = "00081197"


def action_information(transaction_uid: str, refs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The N-ACTION's Action Information (PS3.4 J.3.2.1.1) as DICOM JSON."""
    return {
        _TRANSACTION_UID: {"vr": "UI", "Value": [transaction_uid]},
        _REFERENCED_SOP_SEQUENCE: {
            "vr": "SQ",
            "Value": [
                {
                    _REFERENCED_SOP_CLASS: {"vr": "UI", "Value": [sop_class]},
                    _REFERENCED_SOP_INSTANCE: {"vr": "UI", "Value": [sop_instance]},
                }
                for sop_class, sop_instance in refs
            ],
        },
    }


def event_information(result: CommitmentResult, retrieve_ae_title: str = "") -> dict[str, Any]:
    """An N-EVENT-REPORT's Event Information (PS3.4 J.3.3.1.1) as DICOM JSON."""
    info: dict[str, Any] = {_TRANSACTION_UID: {"vr": "UI", "Value": [result.transaction_uid]}}
    if retrieve_ae_title and result.committed:
        info["00080054"] = {"vr": "AE", "Value": [retrieve_ae_title]}
    if result.committed:
        info[_REFERENCED_SOP_SEQUENCE] = action_information("", result.committed)[_REFERENCED_SOP_SEQUENCE]
    if result.failed:
        info[_FAILED_SOP_SEQUENCE] = {
            "vr": "SQ",
            "Value": [
                {
                    _REFERENCED_SOP_CLASS: {"vr": "UI", "Value": [c] if c else []},
                    _REFERENCED_SOP_INSTANCE: {"vr": "UI", "Value": [u] if u else []},
                    _FAILURE_REASON: {"vr": "US", "Value": [r]},
                }
                for c, u, r in result.failed
            ],
        }
    return info


def parse_action_information(info: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """An N-ACTION's Action Information (PS3.4 J.3.2.1.1): Transaction UID and references."""
    refs = [
        (dj.text(i, _REFERENCED_SOP_CLASS).strip(), dj.text(i, _REFERENCED_SOP_INSTANCE).strip())
        for i in dj.items(info, _REFERENCED_SOP_SEQUENCE)
    ]
    return dj.text(info, _TRANSACTION_UID).strip(), refs


def event_report_command(message_id: int, result: CommitmentResult) -> dict[str, Any]:
    """The N-EVENT-REPORT-RQ command of a commitment result (Event Type 1 or 2)."""
    return {
        "CommandField": cmd.N_EVENT_REPORT_RQ,
        "MessageID": message_id,
        "AffectedSOPClassUID": STORAGE_COMMITMENT_PUSH,
        "AffectedSOPInstanceUID": STORAGE_COMMITMENT_INSTANCE,
        "EventTypeID": result.event_type,
        "CommandDataSetType": cmd.HAS_DATA_SET,
    }


def parse_event_information(info: dict[str, Any]) -> CommitmentResult:
    """An N-EVENT-REPORT's Event Information (PS3.4 J.3.3.1.1)."""

    def items(tag: str) -> list[dict[str, Any]]:
        return [i for i in (info.get(tag, {}).get("Value") or []) if isinstance(i, dict)]

    committed = [(dj.text(i, _REFERENCED_SOP_CLASS), dj.text(i, _REFERENCED_SOP_INSTANCE))
                 for i in items(_REFERENCED_SOP_SEQUENCE)]  # fmt: skip
    failed = []
    for item in items(_FAILED_SOP_SEQUENCE):
        reason = (item.get(_FAILURE_REASON, {}).get("Value") or [0x0110])[0]
        failed.append((dj.text(item, _REFERENCED_SOP_CLASS), dj.text(item, _REFERENCED_SOP_INSTANCE), int(reason)))
    return CommitmentResult(dj.text(info, _TRANSACTION_UID), committed, failed)


class CommitmentScu(Requestor):
    """Asks a peer to commit to instances it has received from us, and reports the commitments
    we gave on associations of ours."""

    _CONTEXTS: list[tuple[str, tuple[str, ...]]] = [(STORAGE_COMMITMENT_PUSH, (tsx.EXPLICIT_LE, tsx.IMPLICIT_LE))]

    def request(
        self, peer: PeerAddress, transaction_uid: str, refs: Sequence[tuple[str, str]], *, wait: float = 5.0
    ) -> CommitmentResult | None:
        """Send the N-ACTION-RQ; return the N-EVENT-REPORT if the peer sends it on this
        association within *wait* seconds, else None (it will come on an association of its
        own). A refused request or an unreachable peer raises PeerError."""
        assoc = self._associate(peer, self._CONTEXTS)
        try:
            offered = assoc.contexts_for(STORAGE_COMMITMENT_PUSH)
            if not offered:
                raise PeerError(f"{peer} does not offer Storage Commitment Push Model")
            context = offered[0]
            command = {
                "CommandField": cmd.N_ACTION_RQ,
                "MessageID": 1,
                "RequestedSOPClassUID": STORAGE_COMMITMENT_PUSH,
                "RequestedSOPInstanceUID": STORAGE_COMMITMENT_INSTANCE,
                "ActionTypeID": 1,
            }
            data = encode_identifier(action_information(transaction_uid, refs), context.transfer_syntax, [])
            assoc.send(context.id, command, data)
            result = None
            while True:  # a peer may report before it answers the N-ACTION
                reply = self._receive(assoc, peer)
                field = int(reply.command.get("CommandField", 0))
                if field == cmd.N_EVENT_REPORT_RQ:
                    result = self.answer(assoc, reply)
                    continue
                if field != cmd.N_ACTION_RSP:
                    raise PeerError(
                        f"{peer} answered the storage commitment request with {cmd.NAMES.get(field, field)}"
                    )
                break
            status = int(reply.command.get("Status", 0xC000))
            if status != 0:
                comment = str(reply.command.get("ErrorComment", ""))
                raise PeerError(f"{peer} refused the storage commitment request: 0x{status:04X} {comment}".strip())
            if result is None and wait > 0:
                assoc.pdus.sock.settimeout(wait)
                event = self._receive(assoc, peer, timeout_ok=True)
                if event is not None and int(event.command.get("CommandField", 0)) == cmd.N_EVENT_REPORT_RQ:
                    result = self.answer(assoc, event)
        except PeerError:
            assoc.abort()
            raise
        except ReleaseRequested:
            assoc.send_release_rp()
            assoc.pdus.close()
            return None
        assoc.pdus.sock.settimeout(self.timeout)
        try:
            assoc.release(self.timeout)
        except (Aborted, ProtocolError, TimeoutError, OSError):
            assoc.abort()
        return result

    def report(self, peer: PeerAddress, result: CommitmentResult) -> None:
        """Send a commitment result on an association of ours, proposing the SCP role of
        Storage Commitment Push Model (PS3.4 J.3.3); raises PeerError when it is not taken."""
        assoc = self._associate(peer, self._CONTEXTS, scp_roles=frozenset({STORAGE_COMMITMENT_PUSH}))
        try:
            offered = assoc.contexts_for(STORAGE_COMMITMENT_PUSH)
            if not offered:
                raise PeerError(f"{peer} does not accept Storage Commitment Push Model")
            context = offered[0]
            data = encode_identifier(event_information(result, self.ae_title), context.transfer_syntax, [])
            assoc.send(context.id, event_report_command(1, result), data)
            reply = self._receive(assoc, peer)
            if int(reply.command.get("CommandField", 0)) != cmd.N_EVENT_REPORT_RSP:
                raise PeerError(f"{peer} answered the commitment report with {reply.command.get('CommandField')}")
            status = int(reply.command.get("Status", 0xC000))
            if status != 0:
                raise PeerError(f"{peer} refused the commitment report: 0x{status:04X}")
        except (PeerError, ReleaseRequested, OSError) as exc:
            assoc.abort()
            if isinstance(exc, PeerError):
                raise
            raise PeerError(f"{peer} ended the association: {exc}") from exc
        try:
            assoc.release(self.timeout)
        except (Aborted, ProtocolError, TimeoutError, OSError):
            assoc.abort()

    @staticmethod
    def answer(assoc: Association, event: Any) -> CommitmentResult:
        """Decode an N-EVENT-REPORT-RQ and acknowledge it (N-EVENT-REPORT-RSP, success)."""
        context = assoc.contexts[event.context_id]
        result = parse_event_information(decode_identifier(event.data or b"", context.transfer_syntax))
        assoc.send(
            event.context_id,
            {
                "CommandField": cmd.N_EVENT_REPORT_RSP,
                "MessageIDBeingRespondedTo": event.command.get("MessageID", 0),
                "AffectedSOPClassUID": STORAGE_COMMITMENT_PUSH,
                "AffectedSOPInstanceUID": event.command.get("AffectedSOPInstanceUID", STORAGE_COMMITMENT_INSTANCE),
                "EventTypeID": event.command.get("EventTypeID", result.event_type),
                "Status": 0,
            },
        )
        return result

    @staticmethod
    def _receive(assoc: Association, peer: PeerAddress, *, timeout_ok: bool = False) -> Any:
        try:
            return assoc.receive()
        except TimeoutError as exc:
            if timeout_ok:
                return None
            raise PeerError(f"{peer} did not answer in time") from exc
        except (Aborted, ProtocolError) as exc:
            raise PeerError(f"{peer} ended the association: {exc}") from exc
