"""pynetdicom as a real DICOM client of the server under test (C-FIND, C-GET, C-STORE).

pynetdicom leaves Nagle's algorithm on; its sockets get TCP_NODELAY here, as every
DICOM socket should.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)
from pynetdicom.transport import AssociationSocket

_original_create_socket = AssociationSocket._create_socket


def _create_socket_nodelay(self: AssociationSocket, address: Any) -> socket.socket:
    sock = _original_create_socket(self, address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


AssociationSocket._create_socket = _create_socket_nodelay  # type: ignore[method-assign]


@contextmanager
def associate(
    port: int, *, ae_title: str = "TESTSCU", contexts: list[Any] | None = None, roles: list[Any] | None = None
) -> Iterator[Association]:
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for cx in contexts or []:
        if isinstance(cx, tuple):
            ae.add_requested_context(*cx)
        else:
            ae.add_requested_context(cx)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="OPENPACS", ext_neg=roles or [], evt_handlers=getattr(associate, "_handlers", None)
    )
    assert assoc.is_established, "association was not established"
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


@dataclass
class FindResult:
    statuses: list[int] = field(default_factory=list)
    answers: list[Dataset] = field(default_factory=list)


def c_find(port: int, identifier: Dataset, *, patient_root: bool = False) -> FindResult:
    model = PatientRootQueryRetrieveInformationModelFind if patient_root else StudyRootQueryRetrieveInformationModelFind
    result = FindResult()
    with associate(port, contexts=[model]) as assoc:
        for status, answer in assoc.send_c_find(identifier, model):
            result.statuses.append(int(status.Status) if status else -1)
            if answer is not None and status and status.Status in (0xFF00, 0xFF01):
                result.answers.append(answer)
    return result


def c_echo(port: int, *, ae_title: str = "TESTSCU") -> int:
    with associate(port, ae_title=ae_title, contexts=[Verification]) as assoc:
        status = assoc.send_c_echo()
        return int(status.Status)


@dataclass
class GetResult:
    final_status: int
    received: list[Dataset] = field(default_factory=list)
    received_syntaxes: list[str] = field(default_factory=list)


def c_get(
    port: int,
    study_uid: str,
    sop_classes: list[str],
    transfer_syntaxes: list[str],
    *,
    series_uid: str = "",
    sop_instance_uid: str = "",
) -> GetResult:
    """C-GET a study (or one instance), accepting the given SOP classes in the given transfer syntaxes."""
    received: list[Dataset] = []
    syntaxes: list[str] = []

    def handle_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append(ds)
        syntaxes.append(str(event.context.transfer_syntax))
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    for uid in sop_classes:
        ae.add_requested_context(uid, transfer_syntaxes)
        roles.append(build_role(uid, scp_role=True))
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="OPENPACS", ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, handle_store)]
    )
    assert assoc.is_established
    ident = Dataset()
    ident.QueryRetrieveLevel = "IMAGE" if sop_instance_uid else "STUDY"
    ident.StudyInstanceUID = study_uid
    if sop_instance_uid:
        ident.SeriesInstanceUID = series_uid
        ident.SOPInstanceUID = sop_instance_uid
    final = -1
    try:
        for status, _ in assoc.send_c_get(ident, StudyRootQueryRetrieveInformationModelGet):
            if status:
                final = int(status.Status)
    finally:
        assoc.release()
        ae.shutdown()
    return GetResult(final, received, syntaxes)


def storage_contexts() -> list[Any]:
    return [cx.abstract_syntax for cx in StoragePresentationContexts]
