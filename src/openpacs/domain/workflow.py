"""The radiology workflow's records and rules (issue 7; IHE RAD TF-1 Scheduled Workflow):
performed procedure steps (PS3.3 C.4.13 to C.4.16, PS3.4 F.7), storage commitment requests
we answer (PS3.4 J.3), links between studies and requested procedures, and the procedure
status model.

The status of a requested procedure moves forward only: scheduled, arrived, in-progress,
completed, preliminary, final; amended follows final (a corrected report, or images added
after the final report); cancelled ends it. Each source (HL7 order, ADT^A10, MPPS, the first
image, a stable study, ORU) proposes a status and :func:`may_advance` decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openpacs.domain.commitment import STORAGE_COMMITMENT_PUSH

MODALITY_PERFORMED_PROCEDURE_STEP = "1.2.840.10008.3.1.2.3.3"

# Performed Procedure Step Status (0040,0252), PS3.3 C.4.14
IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
MPPS_STATUSES = (IN_PROGRESS, COMPLETED, DISCONTINUED)

#: How a study came to be linked to a requested procedure
LINKED_BY = ("order-uid", "request-attributes", "accession", "mpps", "manual")

#: The order of procedure statuses; a status moves only forward (amended after final)
PROCEDURE_RANK = {
    "scheduled": 0,
    "arrived": 1,
    "in-progress": 2,
    "completed": 3,
    "preliminary": 4,
    "final": 5,
    "amended": 6,
}
READ_STATES = frozenset({"preliminary", "final", "amended"})


def may_advance(current: str, proposed: str) -> bool:
    """Whether a procedure in *current* status takes *proposed* (PS3.3 has no such model; this is
    the archive's own, IHE RAD TF-1 4 ordered)."""
    if current == "cancelled":
        return False
    if proposed == "cancelled":
        return current not in READ_STATES
    if proposed == "amended":
        return current in ("final", "amended")
    return PROCEDURE_RANK.get(proposed, -1) > PROCEDURE_RANK.get(current, 99)


@dataclass(frozen=True)
class Transition:
    """A row of a procedure's status history."""

    pk: int
    procedure_pk: int
    status: str
    at: datetime
    source: str


@dataclass(frozen=True)
class StudyLink:
    """A study linked to a requested procedure, and how the link was made."""

    study_instance_uid: str
    procedure_pk: int
    linked_by: str
    linked_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "procedure": self.procedure_pk,
            "linked_by": self.linked_by,
            "linked_at": self.linked_at.isoformat(),
        }


@dataclass
class MppsRow:
    """A Modality Performed Procedure Step as received (N-CREATE, then N-SET)."""

    sop_instance_uid: str
    status: str
    station_ae_title: str
    patient_id: str
    study_instance_uids: tuple[str, ...]
    attrs: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "status": self.status,
            "station_ae_title": self.station_ae_title,
            "patient_id": self.patient_id,
            "study_instance_uids": list(self.study_instance_uids),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "attrs": self.attrs,
        }


# -- storage commitment, we are the SCP (PS3.4 J.3) ------------------------------------------

PENDING, REPORTED, UNDELIVERABLE = "pending", "reported", "undeliverable"

NO_SUCH_OBJECT = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
SOP_CLASS_NOT_SUPPORTED = 0x0122
DUPLICATE_TRANSACTION = 0x0131
PROCESSING_FAILURE = 0x0110


@dataclass(frozen=True)
class CommitmentFact:
    """What the index knows of one instance named in a commitment request."""

    sop_class_uid: str
    rejection: str | None  # None: visible; a rejection code or "deleted"
    locations: int  # live locations with a checksum recorded at ingest


@dataclass
class CommitmentRequest:
    """A storage commitment request received (N-ACTION), and what we answered."""

    transaction_uid: str
    calling_ae_title: str
    address: str
    state: str
    instances: list[tuple[str, str]]  # (SOP Class UID, SOP Instance UID) asked for
    failed: list[tuple[str, str, int]] = field(default_factory=list)  # ... and the Failure Reason
    received_at: datetime | None = None
    reported_at: datetime | None = None
    error: str = ""

    @property
    def committed(self) -> list[tuple[str, str]]:
        failed = {(c, u) for c, u, _ in self.failed}
        return [(c, u) for c, u in self.instances if (c, u) not in failed]

    def to_json(self) -> dict[str, Any]:
        return {
            "transaction_uid": self.transaction_uid,
            "calling_ae_title": self.calling_ae_title,
            "address": self.address,
            "state": self.state,
            "instances": len(self.instances),
            "committed": len(self.committed),
            "failed": [[u, f"0x{r:04X}"] for _, u, r in self.failed[:100]],
            "received_at": self.received_at.isoformat() if self.received_at else None,
            "reported_at": self.reported_at.isoformat() if self.reported_at else None,
            "error": self.error,
        }


def commitment_failures(
    refs: list[tuple[str, str]], facts: dict[str, CommitmentFact], is_storage_class: Any
) -> list[tuple[str, str, int]]:
    """The instances we cannot commit to, with their Failure Reason (PS3.3 C.14.1.1): 0x0112
    not stored, rejected or deleted, or without a live location; 0x0119 stored with another
    SOP Class; 0x0122 a SOP Class we do not store. Decided from the index alone."""
    failed = []
    for sop_class, uid in refs:
        fact = facts.get(uid)
        if not sop_class or not uid or sop_class == STORAGE_COMMITMENT_PUSH:
            failed.append((sop_class, uid, PROCESSING_FAILURE))
        elif not is_storage_class(sop_class):
            failed.append((sop_class, uid, SOP_CLASS_NOT_SUPPORTED))
        elif fact is None or fact.rejection is not None or fact.locations == 0:
            failed.append((sop_class, uid, NO_SUCH_OBJECT))
        elif fact.sop_class_uid != sop_class:
            failed.append((sop_class, uid, CLASS_INSTANCE_CONFLICT))
    return failed


def committed_refusal(committed: dict[str, list[str]], what: str) -> str:
    """Why deleting instances we committed to is refused without force (the rules of
    docs/operations.md, "Storage commitment is a promise")."""
    holders = sorted({ae for aes in committed.values() for ae in aes})
    return (
        f"{len(committed)} instances of this {what} were committed to {', '.join(holders)} (storage commitment);"
        " deleting them breaks that promise: reject them (IOCM) instead, or delete with force"
    )
