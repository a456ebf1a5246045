"""Imaging orders as the archive keeps them: order -> requested procedure -> scheduled
procedure step (one worklist item per step), and the reports that answer them.

The model of PS3.3 C.4.10 to C.4.12 (Scheduled Procedure Step, Requested Procedure, Imaging
Service Request) and of IHE RAD TF-2 4.4 (Procedure Scheduled) and 4.128 (Imaging Order):
an order carries an accession number and placer/filler order numbers; a requested
procedure carries its ID and the Study Instance UID its images should have; a scheduled
step carries the modality, the station and the start date and time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: HL7 priority (TQ1-9 / ORC-7.6, table 0027) -> DICOM Requested Procedure Priority (PS3.3 C.4.11)
PRIORITIES = {
    "S": "STAT",
    "A": "HIGH",
    "T": "HIGH",
    "P": "HIGH",
    "C": "MEDIUM",
    "R": "ROUTINE",
    "STAT": "STAT",
    "HIGH": "HIGH",
    "ROUTINE": "ROUTINE",
    "MEDIUM": "MEDIUM",
    "LOW": "LOW",
}
#: Sort order of priorities (STAT first)
PRIORITY_RANK = {"STAT": 0, "HIGH": 1, "MEDIUM": 2, "ROUTINE": 3, "LOW": 4, "": 5}

# Scheduled Procedure Step Status (PS3.3 C.4.10.1, (0040,0020))
SCHEDULED, ARRIVED, STARTED, COMPLETED, DISCONTINUED = "SCHEDULED", "ARRIVED", "STARTED", "COMPLETED", "DISCONTINUED"
STEP_STATUSES = (SCHEDULED, ARRIVED, "READY", STARTED, "DEPARTED", COMPLETED, DISCONTINUED)

# Requested procedure status, the workflow's own (issue 7): one per source event
PROCEDURE_STATUSES = (
    "scheduled",
    "arrived",
    "in-progress",
    "completed",
    "preliminary",
    "final",
    "amended",
    "cancelled",
)

#: ORC-5 order status (HL7 table 0038) -> scheduled step status
ORDER_STATUS_STEP = {
    "SC": SCHEDULED,
    "IP": STARTED,
    "A": STARTED,
    "CM": COMPLETED,
    "CA": DISCONTINUED,
    "DC": DISCONTINUED,
}
STEP_PROCEDURE = {
    SCHEDULED: "scheduled",
    ARRIVED: "arrived",
    STARTED: "in-progress",
    COMPLETED: "completed",
    DISCONTINUED: "cancelled",
}

#: OBR-25 result status (HL7 table 0123) -> report status
RESULT_STATUSES = {"P": "preliminary", "F": "final", "C": "amended", "A": "preliminary", "R": "preliminary"}

# ORC-1 order control codes (HL7 table 0119)
NEW_CONTROLS = frozenset({"NW", "SN", "NA", ""})
CHANGE_CONTROLS = frozenset({"XO", "XX", "SC", "XR", "OK"})
CANCEL_CONTROLS = frozenset({"CA", "OC", "DC", "OD", "CR", "DR"})


def priority(value: str) -> str:
    """A DICOM Requested Procedure Priority for an HL7 one (empty when unknown)."""
    return PRIORITIES.get(value.strip().upper(), "")


@dataclass(frozen=True)
class Code:
    """A coded entry (HL7 CE/CWE code^text^scheme; DICOM Code Sequence item)."""

    value: str
    meaning: str
    scheme: str

    def to_json(self) -> dict[str, str]:
        return {"value": self.value, "meaning": self.meaning, "scheme": self.scheme}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Code | None:
        return None if not data else cls(str(data["value"]), str(data["meaning"]), str(data["scheme"]))


@dataclass
class StepEntry:
    """One scheduled procedure step (one worklist item), as an order describes it."""

    scheduled_step_id: str
    modality: str = ""
    station_ae_titles: tuple[str, ...] = ()
    station_name: str = ""
    location: str = ""
    start_date: str = ""  # DA
    start_time: str = ""  # TM
    performing_physician: str = ""  # PN
    description: str = ""
    protocol_code: Code | None = None
    status: str = SCHEDULED
    item: dict[str, Any] | None = None  # a worklist item given whole (import, REST): kept as given


@dataclass
class ProcedureEntry:
    """One requested procedure with its steps."""

    requested_procedure_id: str
    accession_number: str = ""
    study_instance_uid: str = ""
    description: str = ""
    code: Code | None = None
    priority: str = ""
    steps: list[StepEntry] = field(default_factory=list)


@dataclass
class PatientSnapshot:
    """The patient as the order names it (the worklist answers with these)."""

    patient_id: str
    issuer: str
    name: str = ""
    birth_date: str = ""
    sex: str = ""


@dataclass
class OrderEntry:
    """An order as a message describes it (one ORC group)."""

    control: str  # ORC-1
    status: str  # ORC-5
    placer_order_number: str
    filler_order_number: str
    patient: PatientSnapshot
    requesting_physician: str = ""
    referring_physician: str = ""
    department: str = ""
    admission_id: str = ""
    priority: str = ""
    procedures: list[ProcedureEntry] = field(default_factory=list)

    @property
    def accession_number(self) -> str:
        return next((p.accession_number for p in self.procedures if p.accession_number), "")


@dataclass
class StepRow:
    """A stored scheduled procedure step with its procedure and order (one worklist item)."""

    pk: int
    procedure_pk: int
    order_pk: int
    scheduled_step_id: str
    status: str
    modality: str
    station_ae_titles: tuple[str, ...]
    start_date: str
    start_time: str
    attrs: dict[str, Any]  # the worklist item as DICOM JSON
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "procedure": self.procedure_pk,
            "order": self.order_pk,
            "scheduled_procedure_step_id": self.scheduled_step_id,
            "status": self.status,
            "modality": self.modality,
            "scheduled_station_ae_title": list(self.station_ae_titles),
            "start_date": self.start_date,
            "start_time": self.start_time,
            "updated_at": self.updated_at.isoformat(),
            "item": self.attrs,
        }


@dataclass
class ProcedureRow:
    pk: int
    order_pk: int
    requested_procedure_id: str
    accession_number: str
    study_instance_uid: str
    description: str
    code: Code | None
    priority: str
    status: str
    status_at: datetime
    steps: list[StepRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "requested_procedure_id": self.requested_procedure_id,
            "accession_number": self.accession_number,
            "study_instance_uid": self.study_instance_uid,
            "description": self.description,
            "code": self.code.to_json() if self.code else None,
            "priority": self.priority,
            "status": self.status,
            "status_at": self.status_at.isoformat(),
            "steps": [s.to_json() for s in self.steps],
        }


@dataclass
class OrderRow:
    pk: int
    placer_order_number: str
    filler_order_number: str
    accession_number: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    sender: str
    status: str  # ORC-5 as last received
    priority: str
    department: str
    requesting_physician: str
    created_at: datetime
    updated_at: datetime
    message_pk: int | None
    procedures: list[ProcedureRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "placer_order_number": self.placer_order_number,
            "filler_order_number": self.filler_order_number,
            "accession_number": self.accession_number,
            "patient_id": self.patient_id,
            "issuer_of_patient_id": self.issuer_of_patient_id,
            "patient_name": self.patient_name,
            "sender": self.sender,
            "order_status": self.status,
            "priority": self.priority,
            "department": self.department,
            "requesting_physician": self.requesting_physician,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "message": self.message_pk,
            "procedures": [p.to_json() for p in self.procedures],
        }


@dataclass
class ReportEntry:
    """A result (ORU^R01 OBR group): the report text or document and what it answers."""

    placer_order_number: str
    filler_order_number: str
    accession_number: str
    requested_procedure_id: str
    patient_id: str
    issuer_of_patient_id: str
    result_status: str  # OBR-25 as sent
    status: str  # preliminary, final, amended, or the OBR-25 code when it has no meaning here
    observed_at: str  # OBR-7 / OBR-22 as sent (DTM)
    text: str
    content_type: str  # text/plain, application/pdf, text/xml (CDA)
    content: bytes
    study_instance_uids: tuple[str, ...] = ()
    verifier: str = ""  # OBR-32 principal result interpreter, as a PN


@dataclass
class ReportRow:
    pk: int
    entry: ReportEntry
    order_pk: int | None
    procedure_pk: int | None
    sender: str
    message_pk: int | None
    received_at: datetime
    sop_instance_uid: str = ""

    def to_json(self, *, with_text: bool = True) -> dict[str, Any]:
        e = self.entry
        out: dict[str, Any] = {
            "id": self.pk,
            "order": self.order_pk,
            "procedure": self.procedure_pk,
            "placer_order_number": e.placer_order_number,
            "filler_order_number": e.filler_order_number,
            "accession_number": e.accession_number,
            "requested_procedure_id": e.requested_procedure_id,
            "patient_id": e.patient_id,
            "issuer_of_patient_id": e.issuer_of_patient_id,
            "result_status": e.result_status,
            "status": e.status,
            "observed_at": e.observed_at,
            "content_type": e.content_type,
            "size": len(e.content),
            "study_instance_uids": list(e.study_instance_uids),
            "verifier": e.verifier,
            "sender": self.sender,
            "message": self.message_pk,
            "received_at": self.received_at.isoformat(),
            "sop_instance_uid": self.sop_instance_uid,
        }
        if with_text:
            out["text"] = e.text
        return out
