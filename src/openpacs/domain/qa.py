"""Corrections of identity (reconciliation): operations made of reversible edits.

ARCHITECTURE.md section 3: identity lives in the index and bytes never change. A
correction changes only the index (attribute sets, the study-to-patient link, a
patient's merge link, its identifiers). Each operation is a list of *edits*; an edit
names the state it expects before (``old``) and the state it leaves (``new``), so that

- applying it checks ``old`` first: nothing is changed under somebody else's feet;
- its inverse swaps ``old`` and ``new``: undo is a new operation made of the inverses,
  in reverse order, and is refused when the objects no longer hold the ``new`` state.

Edits are plain records serialised as JSON in the operation's row and its journal entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from openpacs.domain.errors import Conflict
from openpacs.domain.records import Actor, ActorType


class OperationKind(StrEnum):
    """The corrections (their names are those of the REST paths and CLI commands)."""

    UPDATE_PATIENT = "update-patient"
    UPDATE_STUDY = "update-study"
    UPDATE_SERIES = "update-series"
    MERGE_PATIENTS = "merge-patients"
    UNMERGE = "unmerge"
    MOVE_STUDY = "move-study"
    MERGE_STUDIES = "merge-studies"
    SPLIT_STUDY = "split-study"
    MOVE_SERIES = "move-series"
    MOVE_INSTANCES = "move-instances"
    DISMISS_CONFLICT = "dismiss-conflict"
    REJECT = "reject"
    RESTORE = "restore"
    DELETE = "delete"
    PURGE = "purge"
    UNDO = "undo"


#: where an operation comes from: an administrator, the HIS (ADT: owns identity), a peer's note
SOURCES = ("local", "hl7", "dicom")


class EditKind(StrEnum):
    ATTRIBUTE = "attribute"  # one element of a level's attribute set
    IDENTIFIER = "identifier"  # a patient's identifier (value + issuer) replaced
    STUDY_PATIENT = "study-patient"  # the patient a study belongs to
    MERGED_INTO = "merged-into"  # a patient's merge link (a tombstone points to the survivor)
    CONFLICT = "conflict"  # an identity conflict of the inbox: open (None) or "resolved"
    HIDDEN = "hidden"  # an instance's rejection code or "deleted" (None: visible)
    UID = "uid"  # a series or instance renamed: old -> new UID (the old one retired, 113038)
    PARENT = "parent"  # the study of a series, or the series of an instance (by UID)
    CREATED = "created"  # a study or series made by the operation: None (absent) or its definition
    ALIAS = "alias"  # a retired study UID pointing to the study that took its content


@dataclass(frozen=True)
class RejectionCode:
    """A reason for rejection (PS3.16 CID 7011, Rejected for Quality Reasons etc.; IHE IOCM)."""

    value: str
    meaning: str
    behaviour: str  # what the archive does, for the documentation and the API


#: The IOCM rejection codes (scheme DCM) and what the archive does with each.
REJECTION_CODES: dict[str, RejectionCode] = {
    c.value: c
    for c in (
        RejectionCode("113001", "Rejected for Quality Reasons", "hidden from queries and retrievals; kept"),
        RejectionCode(
            "113037", "Rejected for Patient Safety Reasons", "hidden from queries and retrievals; never shown"
        ),
        RejectionCode("113038", "Incorrect Modality Worklist Entry", "hidden from queries and retrievals; never shown"),
        RejectionCode(
            "113039", "Data Retention Policy Expired", "hidden from queries and retrievals; removed by the next purge"
        ),
    )
}
DELETED = "deleted"  # the hidden state of a soft delete (restorable until purged)
#: the state of a rejection note of ours: kept for peers (routing), hidden from clinical users
NOTE = "rejection-note"
DERIVED = "derived"  # a lossy copy made for routing: kept for sending, hidden from queries
DERIVED_TRANSPORT = "derive-lossy"  # the origin of such copies: stored hidden (DERIVED) at once
LOSSY_COPY_MARK = "OpenPACS lossy copy for routing"  # how their Derivation Description starts


@dataclass(frozen=True)
class Edit:
    """One reversible change of the index.

    ``target`` names the object: ``{"level": "PATIENT", "pk": 3}`` or
    ``{"level": "STUDY", "uid": "1.2..."}``; ``key`` is the DICOM JSON tag of an attribute
    edit. ``old`` and ``new`` are DICOM JSON elements (None: absent), identifiers as
    ``{"value", "issuer"}``, or patient keys.
    """

    kind: EditKind
    target: dict[str, Any]
    old: Any
    new: Any
    key: str = ""

    def inverse(self) -> Edit:
        return Edit(self.kind, self.target, self.new, self.old, self.key)

    def to_json(self) -> dict[str, Any]:
        out = {"kind": str(self.kind), "target": self.target, "old": self.old, "new": self.new}
        if self.key:
            out["key"] = self.key
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Edit:
        return cls(EditKind(data["kind"]), data["target"], data.get("old"), data.get("new"), data.get("key", ""))

    def object_key(self) -> str:
        """The object this edit touches, as ``LEVEL:pk-or-uid`` (used to find later operations)."""
        target = self.target
        return f"{target['level']}:{target.get('uid') or target.get('pk')}"

    def object_keys(self) -> list[str]:
        """Every name of the object: a renaming touches it under its old and its new UID."""
        if self.kind is EditKind.UID:
            return [f"{self.target['level']}:{self.old}", f"{self.target['level']}:{self.new}"]
        return [self.object_key()]


@dataclass
class Operation:
    """A correction: what was asked, the edits that carry it out, and who and why."""

    kind: OperationKind
    reason: str
    params: dict[str, Any]
    edits: list[Edit]
    #: what a reader sees: affected patients, studies, series, instances and old -> new values
    summary: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    undo_of: int | None = None
    source: str = "local"  # "local" (an administrator) or "hl7" (the ADT source owns identity)
    actor: Actor | None = None
    created_at: datetime | None = None
    undone_by: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The operation as the API and ``--json`` print it."""
        return {
            "id": self.id,
            "kind": str(self.kind),
            "reason": self.reason,
            "params": self.params,
            "summary": self.summary,
            "edits": [e.to_json() for e in self.edits],
            "source": self.source,
            "undo_of": self.undo_of,
            "undone_by": self.undone_by,
            "actor": None
            if self.actor is None
            else {"type": str(self.actor.type), "id": self.actor.id, "address": self.actor.address},
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Operation:
        """An operation as :meth:`to_json` wrote it (a journal record)."""
        actor = data.get("actor")
        created = data.get("created_at")
        return cls(
            kind=OperationKind(data["kind"]),
            reason=data["reason"],
            params=data.get("params") or {},
            edits=[Edit.from_json(e) for e in data.get("edits") or []],
            summary=data.get("summary") or {},
            id=data.get("id"),
            undo_of=data.get("undo_of"),
            source=data.get("source", "local"),
            actor=None if actor is None else Actor(ActorType(actor["type"]), actor["id"], actor.get("address", "")),
            created_at=None if created is None else datetime.fromisoformat(created),
        )

    def objects(self) -> list[str]:
        return sorted({k for edit in self.edits for k in edit.object_keys()})


class StateChanged(Conflict):
    """An edit found its object in another state than it expects: nothing was changed.

    For an undo, ``operations`` lists the later operations that touched the same objects.
    """

    def __init__(self, reason: str, operations: list[int] | None = None) -> None:
        super().__init__(reason)
        self.operations = operations or []
