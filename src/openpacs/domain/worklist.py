"""The worklist item of a scheduled procedure step, as the Modality Worklist information model
of PS3.4 K.6.1 returns it (PS3.3 C.4.10 Scheduled Procedure Step, C.4.11 Requested
Procedure, C.4.12 Imaging Service Request, C.7.1.1 Patient), kept as DICOM JSON.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydicom.dataset import Dataset

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import InvalidInstance
from openpacs.domain.orders import (
    SCHEDULED,
    STEP_STATUSES,
    Code,
    OrderEntry,
    PatientSnapshot,
    ProcedureEntry,
    StepEntry,
    priority,
)

SPS_SEQUENCE = "00400100"


def _pn(value: str) -> str:
    """A person name cut to the 64 characters of a component group (PS3.5 6.2)."""
    return value[:64].rstrip("^")


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value[:16]
    item.CodingSchemeDesignator = code.scheme[:16] or "L"
    item.CodeMeaning = code.meaning[:64]
    return item


def worklist_item(order: OrderEntry, procedure: ProcedureEntry, step: StepEntry) -> dict[str, Any]:
    """The item as DICOM JSON (PS3.18 F.2), in UTF-8 (Specific Character Set ISO_IR 192)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    # Patient (C.7.1.1)
    ds.PatientName = _pn(order.patient.name)
    ds.PatientID = order.patient.patient_id[:64]
    if order.patient.issuer:
        ds.IssuerOfPatientID = order.patient.issuer[:64]
    ds.PatientBirthDate = order.patient.birth_date
    ds.PatientSex = order.patient.sex
    # Imaging Service Request (C.4.12)
    ds.AccessionNumber = procedure.accession_number[:16]
    ds.ReferringPhysicianName = _pn(order.referring_physician)
    ds.RequestingPhysician = _pn(order.requesting_physician)
    ds.RequestingService = order.department[:64]
    ds.PlacerOrderNumberImagingServiceRequest = order.placer_order_number[:64]
    ds.FillerOrderNumberImagingServiceRequest = order.filler_order_number[:64]
    ds.AdmissionID = order.admission_id[:64]
    # Requested Procedure (C.4.11)
    ds.RequestedProcedureID = procedure.requested_procedure_id[:16]
    ds.RequestedProcedureDescription = procedure.description[:64]
    ds.RequestedProcedureCodeSequence = [_code_item(procedure.code)] if procedure.code else []
    ds.StudyInstanceUID = procedure.study_instance_uid
    ds.RequestedProcedurePriority = procedure.priority
    # Scheduled Procedure Step (C.4.10)
    sps = Dataset()
    sps.ScheduledStationAETitle = list(step.station_ae_titles) if len(step.station_ae_titles) > 1 else (
        step.station_ae_titles[0] if step.station_ae_titles else ""
    )  # fmt: skip
    sps.ScheduledProcedureStepStartDate = step.start_date
    sps.ScheduledProcedureStepStartTime = step.start_time
    sps.Modality = step.modality
    sps.ScheduledPerformingPhysicianName = _pn(step.performing_physician)
    sps.ScheduledProcedureStepDescription = step.description[:64]
    sps.ScheduledProtocolCodeSequence = [_code_item(step.protocol_code)] if step.protocol_code else []
    sps.ScheduledProcedureStepID = step.scheduled_step_id[:16]
    sps.ScheduledStationName = step.station_name[:16]
    sps.ScheduledProcedureStepLocation = step.location[:16]
    sps.ScheduledProcedureStepStatus = step.status
    ds.ScheduledProcedureStepSequence = [sps]
    return ds.to_json_dict()


def _code_of(item: dict[str, Any], key: str) -> Code | None:
    found = dj.items(item, key)
    if not found:
        return None
    code = found[0]
    return Code(dj.text(code, "00080100"), dj.text(code, "00080104"), dj.text(code, "00080102"))


_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")


def checked_item(item: dict[str, Any]) -> dict[str, Any]:
    """A worklist item from outside (the REST API) as pydicom reads and writes it back; raises
    InvalidInstance (400) with the reason when it is not DICOM JSON (PS3.18 F.2)."""
    if not all(isinstance(k, str) and _TAG.match(k) for k in item):
        raise InvalidInstance("a worklist item is a DICOM JSON object keyed by 8 hexadecimal digit tags")
    try:
        return dict(Dataset.from_json(item).to_json_dict())
    except Exception as exc:
        raise InvalidInstance(f"not a valid DICOM JSON item: {type(exc).__name__}: {exc}"[:300]) from exc


def entry_from_item(item: dict[str, Any], *, default_step_id: str, default_procedure_id: str) -> OrderEntry:
    """An order of one procedure and one step from a worklist item given whole (a DICOM
    worklist file, or the REST API), PS3.4 K.6.1 attributes; the item itself is kept as the
    step's worklist item. Raises InvalidInstance when it lacks a Scheduled Procedure Step
    Sequence item or a Patient ID."""
    steps = dj.items(item, SPS_SEQUENCE)
    if not steps:
        raise InvalidInstance("a worklist item needs a Scheduled Procedure Step Sequence (0040,0100) item")
    patient_id = dj.text(item, "00100020").strip()
    if not patient_id:
        raise InvalidInstance("a worklist item needs a Patient ID (0010,0020)")
    sps = steps[0]
    status = dj.text(sps, "00400020").strip().upper() or SCHEDULED
    if status not in STEP_STATUSES:
        raise InvalidInstance(f"unknown Scheduled Procedure Step Status {status!r}")
    step = StepEntry(
        scheduled_step_id=dj.text(sps, "00400009").strip() or default_step_id,
        modality=dj.text(sps, "00080060").strip().upper(),
        station_ae_titles=tuple(str(v).strip() for v in dj.values(sps, "00400001") if v and str(v).strip()),
        station_name=dj.text(sps, "00400010"),
        location=dj.text(sps, "00400011"),
        start_date=dj.text(sps, "00400002").strip()[:8],
        start_time=dj.text(sps, "00400003").strip()[:14],
        performing_physician=dj.text(sps, "00400006"),
        description=dj.text(sps, "00400007"),
        protocol_code=_code_of(sps, "00400008"),
        status=status,
        item=item,
    )
    procedure = ProcedureEntry(
        requested_procedure_id=dj.text(item, "00401001").strip() or default_procedure_id,
        accession_number=dj.text(item, "00080050").strip(),
        study_instance_uid=dj.text(item, "0020000D").strip(),
        description=dj.text(item, "00321060"),
        code=_code_of(item, "00321064"),
        priority=priority(dj.text(item, "00401003")),
        steps=[step],
    )
    return OrderEntry(
        control="NW",
        status="",
        placer_order_number=dj.text(item, "00402016").strip(),
        filler_order_number=dj.text(item, "00402017").strip(),
        patient=PatientSnapshot(
            patient_id=patient_id,
            issuer=dj.text(item, "00100021").strip(),
            name=dj.text(item, "00100010"),
            birth_date=dj.text(item, "00100030"),
            sex=dj.text(item, "00100040"),
        ),
        requesting_physician=dj.text(item, "00321032"),
        referring_physician=dj.text(item, "00080090"),
        department=dj.text(item, "00321033"),
        admission_id=dj.text(item, "00380010"),
        priority=priority(dj.text(item, "00401003")),
        procedures=[procedure],
    )


def step_columns(step: StepEntry, patient_id: str) -> dict[str, str]:
    """The indexed columns of a worklist entry (what the worklist query selects on first)."""
    return {
        "modality": step.modality,
        "station_ae_title": "\\".join(step.station_ae_titles)[:200],
        "start_date": step.start_date,
        "start_time": step.start_time,
        "patient_id": patient_id[:64],
    }


def stored_item(generated: dict[str, Any], given: dict[str, Any] | None, status: str) -> dict[str, Any]:
    """The item kept for a step: the given item (import, REST) over the generated one, with
    the step's status; the first Scheduled Procedure Step item is merged key by key."""
    out = copy.deepcopy(generated)
    if given:
        for key, element in given.items():
            if key == SPS_SEQUENCE:
                continue
            out[key] = copy.deepcopy(element)
        given_steps = dj.items(given, SPS_SEQUENCE)
        if given_steps:
            merged = {**(dj.items(out, SPS_SEQUENCE) or [{}])[0], **copy.deepcopy(given_steps[0])}
            out[SPS_SEQUENCE] = {"vr": "SQ", "Value": [merged, *copy.deepcopy(given_steps[1:])]}
    steps = dj.items(out, SPS_SEQUENCE) or [{}]
    steps[0]["00400020"] = {"vr": "CS", "Value": [status]}
    out[SPS_SEQUENCE] = {"vr": "SQ", "Value": steps}
    return out
