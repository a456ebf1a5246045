"""Association negotiation (PS3.8 7.1, PS3.7 D.3.3) with pynetdicom's PDUs and negotiation.

pynetdicom decodes and encodes A-ASSOCIATE-RQ/AC/RJ and negotiates presentation
contexts and SCP/SCU roles; this module only decides what we support and turns the
result into an :class:`~openpacs.dimse.association.Association` (ADR 0004).
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from typing import Any, cast

from pydicom.uid import UID
from pynetdicom import sop_class
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor, negotiate_as_requestor
from pynetdicom.service_class import ServiceClass, StorageServiceClass
from pynetdicom.transport import AddressInformation

from openpacs.dimse import pdu
from openpacs.dimse.association import Association, AssociationInfo, Context
from openpacs.domain import transfer_syntaxes as tsx
from openpacs.domain.errors import PeerError
from openpacs.domain.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from openpacs.ports.peers import PeerAddress

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

VERIFICATION = "1.2.840.10008.1.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
QUERY_RETRIEVE = frozenset(
    {PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET, STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET}
)
COMMAND_SYNTAXES = (tsx.EXPLICIT_LE, tsx.IMPLICIT_LE, tsx.EXPLICIT_BE, tsx.DEFLATED_LE)
STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
MODALITY_PERFORMED_PROCEDURE_STEP = "1.2.840.10008.3.1.2.3.3"
#: normalized and worklist services: command-like data sets in any uncompressed syntax
WORKFLOW_SERVICES = frozenset({MODALITY_WORKLIST_FIND, MODALITY_PERFORMED_PROCEDURE_STEP})


def is_storage_sop_class(uid: str) -> bool:
    """A storage SOP class pynetdicom knows, or an unknown one (taken as storage, e.g. private)."""
    if uid in QUERY_RETRIEVE or uid in WORKFLOW_SERVICES or uid in (VERIFICATION, STORAGE_COMMITMENT_PUSH):
        return False
    service = sop_class.uid_to_service_class(uid)
    return service is StorageServiceClass or service is ServiceClass


def _context(abstract: str, syntaxes: tuple[str, ...], *, roles: bool = False) -> PresentationContext:
    cx = PresentationContext()
    cx.abstract_syntax = abstract
    for uid in syntaxes:
        cx.add_transfer_syntax(uid)
    if roles:
        cx.scu_role = True
        cx.scp_role = True
    return cx


def _reason_text(result: int, source: int, reason: int) -> str:
    reasons = {
        (1, 1): "no reason given",
        (1, 2): "application context name not supported",
        (1, 3): "calling AE title not recognised",
        (1, 7): "called AE title not recognised",
        (2, 1): "no reason given (ACSE)",
        (2, 2): "protocol version not supported",
        (3, 1): "temporary congestion",
        (3, 2): "local limit exceeded",
    }
    kind = "permanently" if result == 1 else "transiently"
    return f"association rejected {kind}: {reasons.get((source, reason), f'reason {reason}')}"


@dataclass(frozen=True)
class Rejection:
    """A-ASSOCIATE-RJ parameters (PS3.8 9.3.4)."""

    result: int
    source: int
    reason: int

    def __str__(self) -> str:
        return _reason_text(self.result, self.source, self.reason)


REJECT_CALLING_AE = Rejection(1, 1, 3)
REJECT_CALLED_AE = Rejection(1, 1, 7)
REJECT_NO_REASON = Rejection(1, 1, 1)
REJECT_BUSY = Rejection(2, 3, 2)


def decode_request(body: memoryview) -> A_ASSOCIATE:
    """An A-ASSOCIATE-RQ body (after the 6-byte PDU header) as pynetdicom's primitive."""
    rq = A_ASSOCIATE_RQ()
    rq.decode(b"\x01\x00" + len(body).to_bytes(4, "big") + bytes(body))
    return rq.to_primitive()


def supported_contexts(requested: list[PresentationContext]) -> list[PresentationContext]:
    """The contexts we accept, for the abstract syntaxes a requestor proposes.

    Transfer syntaxes are listed in the requestor's order of preference, so that a
    modality's first choice is taken and its objects are stored as it sends them.
    """
    proposed: dict[str, list[str]] = {}
    for cx in requested:
        order = proposed.setdefault(str(cx.abstract_syntax), [])
        order.extend(str(ts) for ts in cx.transfer_syntax if str(ts) not in order)
    supported: list[PresentationContext] = []
    for abstract, order in proposed.items():
        if abstract == VERIFICATION or abstract in QUERY_RETRIEVE or abstract in WORKFLOW_SERVICES:
            ours: tuple[str, ...] = COMMAND_SYNTAXES
            roles = False
        elif abstract == STORAGE_COMMITMENT_PUSH:
            # a modality asks us to commit (we are SCP), and a node we asked for commitment reports
            # on an association of its own (it is SCP, we accept the SCU role; PS3.4 J.3.3)
            ours = COMMAND_SYNTAXES
            roles = True
        elif is_storage_sop_class(abstract):
            ours = tsx.ACCEPTED
            roles = True
        else:
            continue
        preferred = tuple(ts for ts in order if ts in ours) + tuple(ts for ts in ours if ts not in order)
        supported.append(_context(abstract, preferred, roles=roles))
    return supported


def accept(
    sock: pdu.PduSocket,
    request: A_ASSOCIATE,
    *,
    ae_title: str,
    max_pdu: int,
    address: tuple[str, int],
) -> Association:
    """Negotiate the request's contexts, send A-ASSOCIATE-AC, return the association."""
    rq_roles = {
        UID(str(item.sop_class_uid)): (item.scu_role, item.scp_role)
        for item in request.user_information
        if isinstance(item, SCP_SCU_RoleSelectionNegotiation)
    }
    requested = request.presentation_context_definition_list
    results, ac_roles = negotiate_as_acceptor(requested, supported_contexts(requested), rq_roles or None)
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title = request.calling_ae_title
    primitive.called_ae_title = request.called_ae_title
    primitive.result = 0x00
    primitive.result_source = 0x01
    primitive.presentation_context_definition_results_list = results
    primitive.user_information = _user_information(max_pdu) + list(ac_roles)
    ac = A_ASSOCIATE_AC()
    ac.from_primitive(primitive)
    sock.send(ac.encode())
    contexts = _accepted(results)
    return Association(
        pdus=sock,
        info=AssociationInfo(
            calling_ae=str(request.calling_ae_title).strip(),
            called_ae=str(request.called_ae_title).strip(),
            address=address[0],
            port=address[1],
            peer_max_pdu=int(request.maximum_length_received or 0),
            implementation_class_uid=str(request.implementation_class_uid or ""),
            implementation_version=_version_name(request),
        ),
        contexts=contexts,
    )


def reject(sock: pdu.PduSocket, rejection: Rejection) -> None:
    """Send A-ASSOCIATE-RJ and close."""
    primitive = A_ASSOCIATE()
    primitive.result = rejection.result
    primitive.result_source = rejection.source
    primitive.diagnostic = rejection.reason
    rj = A_ASSOCIATE_RJ()
    rj.from_primitive(primitive)
    with contextlib.suppress(OSError):
        sock.send(rj.encode())
    sock.close()


def _user_information(max_pdu: int) -> list[Any]:
    length = MaximumLengthNotification()
    length.maximum_length_received = max_pdu
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = IMPLEMENTATION_VERSION
    return [length, implementation, version]


def _accepted(results: list[PresentationContext]) -> dict[int, Context]:
    """The accepted presentation contexts of a negotiation, by context ID."""
    return {
        cast(int, cx.context_id): Context(
            id=cast(int, cx.context_id),
            abstract_syntax=str(cx.abstract_syntax),
            transfer_syntax=str(cx.transfer_syntax[0]),
            as_scu=bool(cx.as_scu),
            as_scp=bool(cx.as_scp),
        )
        for cx in results
        if cx.result == 0x00
    }


def _version_name(primitive: A_ASSOCIATE) -> str:
    for item in primitive.user_information:
        if isinstance(item, ImplementationVersionNameNotification):
            return str(item.implementation_version_name or "")
    return ""


class AssociationFailed(Exception):
    """An association request failed; the message says why in words an administrator understands."""


def request(
    host: str,
    port: int,
    *,
    calling_ae: str,
    called_ae: str,
    contexts: list[tuple[str, tuple[str, ...]]],
    max_pdu: int,
    timeout: float,
    scp_roles: frozenset[str] = frozenset(),
) -> Association:
    """Connect and negotiate an association as requestor (PS3.8 7.1.1).

    *contexts* lists (abstract syntax, transfer syntaxes); *scp_roles* the SOP classes
    for which we propose to be SCP too (C-GET's storage sub-operations).
    Raises AssociationFailed.
    """
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        raise AssociationFailed(f"host name {host!r} could not be resolved ({exc.strerror})") from exc
    except ConnectionRefusedError as exc:
        raise AssociationFailed(f"connection refused by {host}:{port}: nothing listens there") from exc
    except TimeoutError as exc:
        raise AssociationFailed(f"no answer from {host}:{port} within {timeout:g} s (timeout)") from exc
    except OSError as exc:
        raise AssociationFailed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    pdu.tune_socket(raw)
    sock = pdu.PduSocket(raw, max_receive=max_pdu)
    requested: list[PresentationContext] = []
    for n, (abstract, syntaxes) in enumerate(contexts):
        cx = _context(abstract, syntaxes)
        cx.context_id = 2 * n + 1
        requested.append(cx)
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title = calling_ae
    primitive.called_ae_title = called_ae
    primitive.calling_presentation_address = AddressInformation("0.0.0.0", 0)
    primitive.called_presentation_address = AddressInformation(host, port)
    primitive.presentation_context_definition_list = requested
    roles = []
    for uid in sorted(scp_roles):
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = uid
        role.scu_role = True
        role.scp_role = True
        roles.append(role)
    primitive.user_information = _user_information(max_pdu) + roles
    rq = A_ASSOCIATE_RQ()
    rq.from_primitive(primitive)
    try:
        sock.send(rq.encode())
        pdu_type, body = sock.read_pdu()
    except TimeoutError as exc:
        sock.close()
        raise AssociationFailed(f"{called_ae}@{host}:{port} did not answer the association request in time") from exc
    except (OSError, pdu.ConnectionClosed, pdu.ProtocolError) as exc:
        sock.close()
        raise AssociationFailed(f"{called_ae}@{host}:{port} closed the connection during negotiation ({exc})") from exc
    raw_pdu = bytes((pdu_type, 0)) + len(body).to_bytes(4, "big") + bytes(body)
    if pdu_type == pdu.A_ASSOCIATE_RJ:
        rj = A_ASSOCIATE_RJ()
        rj.decode(raw_pdu)
        sock.close()
        raise AssociationFailed(
            f"{called_ae}@{host}:{port}: {_reason_text(rj.result or 0, rj.source or 0, rj.reason_diagnostic or 0)}"
        )
    if pdu_type == pdu.A_ABORT:
        sock.close()
        raise AssociationFailed(f"{called_ae}@{host}:{port} aborted the association request")
    if pdu_type != pdu.A_ASSOCIATE_AC:
        sock.close()
        raise AssociationFailed(f"{called_ae}@{host}:{port} answered with an unexpected PDU (type {pdu_type})")
    ac = A_ASSOCIATE_AC()
    ac.decode(raw_pdu)
    answer = ac.to_primitive()
    ac_roles = {
        UID(str(item.sop_class_uid)): (item.scu_role, item.scp_role)
        for item in answer.user_information
        if isinstance(item, SCP_SCU_RoleSelectionNegotiation)
    }
    for cx in requested:
        if str(cx.abstract_syntax) in scp_roles:
            cx.scu_role, cx.scp_role = True, True
    negotiated = negotiate_as_requestor(requested, answer.presentation_context_definition_results_list, ac_roles)
    accepted = _accepted(negotiated)
    sock.sock.settimeout(timeout)
    return Association(
        pdus=sock,
        info=AssociationInfo(
            calling_ae=calling_ae,
            called_ae=called_ae,
            address=host,
            port=port,
            peer_max_pdu=int(answer.maximum_length_received or 0),
            implementation_class_uid=str(answer.implementation_class_uid or ""),
            implementation_version=_version_name(answer),
        ),
        contexts=accepted,
    )


class Requestor:
    """What our SCUs share (PS3.8 7.1.1): our AE title, the PDU size we take, the timeout, and
    an association to a peer, whose failure is a PeerError an administrator can read."""

    def __init__(self, *, ae_title: str, max_pdu: int, timeout: float = 30.0) -> None:
        self.ae_title = ae_title
        self.max_pdu = max_pdu
        self.timeout = timeout

    def _associate(
        self,
        peer: PeerAddress,
        contexts: list[tuple[str, tuple[str, ...]]],
        timeout: float | None = None,
        *,
        scp_roles: frozenset[str] = frozenset(),
    ) -> Association:
        try:
            return request(
                peer.host,
                peer.port,
                calling_ae=self.ae_title,
                called_ae=peer.ae_title,
                contexts=contexts,
                max_pdu=self.max_pdu,
                timeout=self.timeout if timeout is None else timeout,
                scp_roles=scp_roles,
            )
        except AssociationFailed as exc:
            raise PeerError(str(exc)) from exc
