"""The worklist item of a scheduled procedure step, as the Modality Worklist information model
of PS3.4 K.6.1 returns it (PS3.3 C.4.10 Scheduled Procedure Step, C.4.11 Requested
Procedure, C.4.12 Imaging Service Request, C.7.1.1 Patient), kept as DICOM JSON.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from openpacs.domain.orders import Code, OrderEntry, ProcedureEntry, StepEntry


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
