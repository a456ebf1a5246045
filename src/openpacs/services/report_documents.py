"""Reports received by HL7 stored as DICOM objects in their study, for viewers that show
documents beside the images (``hl7.reports_as_dicom``).

- a PDF becomes an Encapsulated PDF instance (PS3.3 A.45.1, SOP Class 1.2.840.10008.5.1.4.1.1.104.1);
- a CDA document an Encapsulated CDA instance (PS3.3 A.45.2, 1.2.840.10008.5.1.4.1.1.104.2);
- text a Basic Text SR (PS3.3 A.35.1, 1.2.840.10008.5.1.4.1.1.88.11): a container titled
  Diagnostic Imaging Report (LOINC 18748-4) holding the text, VERIFIED when the report is
  final or amended.

The patient and study attributes are those the archive gives the study now (coerced), so
the document lands in the same study and patient; it has a series of its own (Modality DOC
or SR, Series Number 9998), a new SOP Instance UID, and references the order through
Referenced Request Sequence when the report is linked to one.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from openpacs.domain import dicom_json as dj
from openpacs.domain.orders import ReportRow
from openpacs.domain.records import Actor, ActorType, Origin, StoredInstance
from openpacs.domain.tags import LEVEL_KEYS, Level
from openpacs.ports.index import Index
from openpacs.services.ingest import IngestService
from openpacs.services.outbound import coerced_header

REPORT_TRANSPORT = "hl7-report"
ENCAPSULATED_PDF = UID("1.2.840.10008.5.1.4.1.1.104.1")
ENCAPSULATED_CDA = UID("1.2.840.10008.5.1.4.1.1.104.2")
BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def report_document(first: StoredInstance, report: ReportRow, now: datetime) -> tuple[str, bytes]:
    """(SOP Instance UID, Part 10 bytes) of the report as a DICOM object in the study of *first*."""
    header = coerced_header(first)
    patient_study = {k: v for k, v in header.items() if k in LEVEL_KEYS[Level.PATIENT] | LEVEL_KEYS[Level.STUDY]}
    ds = dj.to_dataset(patient_study)
    entry = report.entry
    sop_uid = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyInstanceUID = first.study_instance_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = sop_uid
    ds.SeriesNumber = 9998
    ds.InstanceNumber = 1
    ds.SeriesDescription = "Report"
    ds.Manufacturer = "OpenPACS"
    day, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ContentDate = ds.InstanceCreationDate = entry.observed_at[:8] if entry.observed_at[:8].isdigit() else day
    ds.ContentTime = ds.InstanceCreationTime = time
    if entry.accession_number and not ds.get("AccessionNumber"):
        ds.AccessionNumber = entry.accession_number[:16]
    if entry.placer_order_number or entry.filler_order_number or entry.requested_procedure_id:
        request = Dataset()
        request.StudyInstanceUID = first.study_instance_uid
        request.AccessionNumber = entry.accession_number[:16]
        request.RequestedProcedureID = entry.requested_procedure_id[:16]
        request.PlacerOrderNumberImagingServiceRequest = entry.placer_order_number[:64]
        request.FillerOrderNumberImagingServiceRequest = entry.filler_order_number[:64]
        request.RequestedProcedureDescription = ""
        request.RequestedProcedureCodeSequence = Sequence([])
        request.ReferencedStudySequence = Sequence([])
        ds.ReferencedRequestSequence = Sequence([request])
    title = _code("18748-4", "LN", "Diagnostic Imaging Report")
    if entry.content_type in ("application/pdf", "text/xml"):
        sop_class = ENCAPSULATED_PDF if entry.content_type == "application/pdf" else ENCAPSULATED_CDA
        ds.Modality = "DOC"
        ds.ConversionType = "WSD"
        ds.BurnedInAnnotation = "YES"
        ds.DocumentTitle = f"Report ({entry.status})"
        ds.ConceptNameCodeSequence = Sequence([title])
        ds.MIMETypeOfEncapsulatedDocument = entry.content_type
        data = entry.content + (b"\0" if len(entry.content) % 2 else b"")
        ds.EncapsulatedDocument = data
        ds.EncapsulatedDocumentLength = len(entry.content)
        ds.AcquisitionDateTime = ""
        if sop_class == ENCAPSULATED_CDA:
            ds.HL7InstanceIdentifier = _cda_identifier(entry.content)
    else:
        sop_class = BASIC_TEXT_SR
        ds.Modality = "SR"
        ds.ValueType = "CONTAINER"
        ds.ContinuityOfContent = "SEPARATE"
        ds.ConceptNameCodeSequence = Sequence([title])
        ds.CompletionFlag = "COMPLETE" if entry.status in ("final", "amended") else "PARTIAL"
        ds.VerificationFlag = "VERIFIED" if entry.status in ("final", "amended") else "UNVERIFIED"
        if ds.VerificationFlag == "VERIFIED":
            observer = Dataset()
            observer.VerifyingObserverName = entry.verifier[:64] or "Unknown"
            observer.VerifyingOrganization = (report.sender.split("|")[-1] or report.sender.split("|")[0])[:64] or (
                "Unknown"
            )
            observer.VerificationDateTime = now.strftime("%Y%m%d%H%M%S")
            observer.VerifyingObserverIdentificationCodeSequence = Sequence([])
            ds.VerifyingObserverSequence = Sequence([observer])
        ds.ReferencedPerformedProcedureStepSequence = Sequence([])
        ds.PerformedProcedureCodeSequence = Sequence([])
        text = Dataset()
        text.RelationshipType = "CONTAINS"
        text.ValueType = "TEXT"
        text.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
        text.TextValue = entry.text
        ds.ContentSequence = Sequence([text])
    ds.SOPClassUID = sop_class
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return str(sop_uid), buffer.getvalue()


_CDA_ID = re.compile(rb'<id\s[^>]*?root="([^"]+)"(?:[^>]*?extension="([^"]+)")?')


def _cda_identifier(document: bytes) -> str:
    """HL7 Instance Identifier (0040,E001): the CDA's ClinicalDocument/id as root^extension."""
    found = _CDA_ID.search(document[:65536])
    if found is None:
        return f"{generate_uid()}"
    root, extension = found.group(1).decode("utf-8", "replace"), (found.group(2) or b"").decode("utf-8", "replace")
    return f"{root}^{extension}" if extension else root


class ReportDocuments:
    """Stores reports as DICOM objects through the ingest service (so they are indexed,
    routed and served like any object)."""

    def __init__(self, index: Index, ingest: IngestService, *, clock: Callable[[], datetime]) -> None:
        self._index = index
        self._ingest = ingest
        self._clock = clock

    def store(self, report: ReportRow) -> str:
        """Store *report* in the first of its studies the archive holds; a note of what was done."""
        for uid in report.entry.study_instance_uids:
            with self._index.session() as session:
                instances = session.stored_instances(Level.STUDY, [uid])
            if not instances:
                continue
            sop_uid, data = report_document(instances[0], report, self._clock())
            actor = Actor(ActorType.HL7, report.sender)
            self._ingest.store(data, Origin(actor=actor, transport=REPORT_TRANSPORT, calling_ae=""))
            with self._index.session(write=True) as session:
                session.orders.set_report_instance(report.pk, sop_uid)
            return f"stored as {sop_uid} in study {uid}"
        return "not stored as DICOM: none of its studies is in the archive yet"
