"""N-CREATE and N-SET as SCU (PS3.7 10.1.5 and 10.1.3), one association per operation: MPPS
forwarded to other nodes (PS3.4 F.7) and Instance Availability Notifications (PS3.4 R)."""

from __future__ import annotations

from typing import Any

from openpacs.dimse import commands as cmd
from openpacs.dimse.association import Aborted, ReleaseRequested
from openpacs.dimse.identifiers import encode_identifier
from openpacs.dimse.negotiation import Requestor
from openpacs.dimse.pdu import ProtocolError
from openpacs.domain import transfer_syntaxes as tsx
from openpacs.domain.errors import PeerError
from openpacs.ports.peers import PeerAddress


class NormalizedScu(Requestor):
    """Sends N-CREATE and N-SET requests; thread-safe (no state between calls)."""

    def n_create(self, peer: PeerAddress, sop_class_uid: str, sop_instance_uid: str, dataset: dict[str, Any]) -> int:
        command = {
            "CommandField": cmd.N_CREATE_RQ,
            "MessageID": 1,
            "AffectedSOPClassUID": sop_class_uid,
            "AffectedSOPInstanceUID": sop_instance_uid,
        }
        return self._operation(peer, sop_class_uid, command, cmd.N_CREATE_RSP, dataset)

    def n_set(self, peer: PeerAddress, sop_class_uid: str, sop_instance_uid: str, dataset: dict[str, Any]) -> int:
        command = {
            "CommandField": cmd.N_SET_RQ,
            "MessageID": 1,
            "RequestedSOPClassUID": sop_class_uid,
            "RequestedSOPInstanceUID": sop_instance_uid,
        }
        return self._operation(peer, sop_class_uid, command, cmd.N_SET_RSP, dataset)

    def _operation(
        self, peer: PeerAddress, sop_class_uid: str, command: dict[str, Any], answer: int, dataset: dict[str, Any]
    ) -> int:
        assoc = self._associate(peer, [(sop_class_uid, (tsx.EXPLICIT_LE, tsx.IMPLICIT_LE))])
        try:
            contexts = assoc.contexts_for(sop_class_uid)
            if not contexts:
                raise PeerError(f"{peer} does not accept SOP class {sop_class_uid}")
            context = contexts[0]
            assoc.send(context.id, command, encode_identifier(dataset, context.transfer_syntax, ["ISO_IR 192"]))
            reply = assoc.receive()
            if int(reply.command.get("CommandField", 0)) != answer:
                raise PeerError(f"{peer} answered with {cmd.NAMES.get(int(reply.command.get('CommandField', 0)))}")
            status = int(reply.command.get("Status", 0xC000))
        except (Aborted, ReleaseRequested, ProtocolError, TimeoutError, OSError) as exc:
            assoc.abort()
            raise PeerError(f"{peer} ended the association: {exc}") from exc
        except PeerError:
            assoc.abort()
            raise
        try:
            assoc.release(self.timeout)
        except (Aborted, ProtocolError, TimeoutError, OSError):
            assoc.abort()
        return status
