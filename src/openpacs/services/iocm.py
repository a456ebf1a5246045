"""Rejection notes (IHE RAD TF-1 IOCM; PS3.3 A.35.4 Key Object Selection Document, TID 2010).

A rejection note is a Key Object Selection Document whose title (Concept Name Code
Sequence) is one of the rejection codes of CID 7011, and which references every rejected
instance, both in the Current Requested Procedure Evidence Sequence and as content
items. It is an instance of its own, in a series of its own of the same study, so that
peers that receive it (C-STORE, STOW-RS) can hide the instances too.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from openpacs.domain import dicom_json as dj
from openpacs.domain.qa import REJECTION_CODES, RejectionCode
from openpacs.domain.records import StoredInstance
from openpacs.domain.tags import LEVEL_KEYS, Level
from openpacs.services.outbound import coerced_header

#: the transport of the rejection notes our own operations store
REJECTION_TRANSPORT = "qa-reject"
KOS_SOP_CLASS = UID("1.2.840.10008.5.1.4.1.1.88.59")
_IMAGE_CLASS_PREFIXES = ("1.2.840.10008.5.1.4.1.1.",)
_NOT_IMAGES = ("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.11.", "1.2.840.10008.5.1.4.1.1.66")


def _code(value: str, meaning: str, scheme: str = "DCM") -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _is_image(sop_class_uid: str) -> bool:
    return sop_class_uid.startswith(_IMAGE_CLASS_PREFIXES) and not sop_class_uid.startswith(_NOT_IMAGES)


def rejection_note(instances: list[StoredInstance], code: RejectionCode, now: datetime) -> tuple[str, bytes]:
    """(SOP Instance UID, Part 10 bytes) of a rejection note for *instances* of one study."""
    references = [(i.series_instance_uid, i.sop_class_uid, i.sop_instance_uid) for i in instances]
    return rejection_note_of(instances[0], references, code, now)


def rejection_note_of(
    first: StoredInstance, references: list[tuple[str, str, str]], code: RejectionCode, now: datetime
) -> tuple[str, bytes]:
    """A rejection note in the study of *first* (its patient and study attributes) for the
    instances *references* names: (Series Instance UID, SOP Class UID, SOP Instance UID)."""
    header = coerced_header(first)
    patient_study = {k: v for k, v in header.items() if k in LEVEL_KEYS[Level.PATIENT] | LEVEL_KEYS[Level.STUDY]}
    ds = dj.to_dataset(patient_study)
    sop_uid = generate_uid()
    ds.SOPClassUID = KOS_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = first.study_instance_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "KO"
    ds.SeriesNumber = 9999
    ds.SeriesDescription = "Rejection note"
    ds.InstanceNumber = 1
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([_code(code.value, code.meaning)])
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2010"
    ds.ContentTemplateSequence = Sequence([template])
    ds.ReferencedPerformedProcedureStepSequence = Sequence([])
    ds.Manufacturer = "OpenPACS"
    # PS3.3 C.17.2: every referenced instance, grouped by series
    by_series: dict[str, list[tuple[str, str]]] = {}
    for series_uid, sop_class_uid, sop_instance_uid in references:
        by_series.setdefault(series_uid, []).append((sop_class_uid, sop_instance_uid))
    study_item = Dataset()
    study_item.StudyInstanceUID = first.study_instance_uid
    series_items = []
    content = []
    for series_uid, members in by_series.items():
        series_item = Dataset()
        series_item.SeriesInstanceUID = series_uid
        series_item.ReferencedSOPSequence = Sequence([_reference(*m) for m in members])
        series_items.append(series_item)
        for member in members:
            item = Dataset()
            item.RelationshipType = "CONTAINS"
            item.ValueType = "IMAGE" if _is_image(member[0]) else "COMPOSITE"
            item.ReferencedSOPSequence = Sequence([_reference(*member)])
            content.append(item)
    study_item.ReferencedSeriesSequence = Sequence(series_items)
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([study_item])
    ds.ContentSequence = Sequence(content)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = KOS_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return sop_uid, buffer.getvalue()


def _reference(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


def rejection_code(sop_class_uid: str, header: dict[str, Any]) -> str | None:
    """The code of a rejection note (a Key Object Selection titled with a CID 7011 code), else None."""
    if sop_class_uid != KOS_SOP_CLASS:
        return None
    titles = dj.items(header, "0040A043")  # Concept Name Code Sequence
    if not titles:
        return None
    code = dj.text(titles[0], "00080100")  # Code Value
    scheme = dj.text(titles[0], "00080102")  # Coding Scheme Designator
    return code if code in REJECTION_CODES and scheme == "DCM" else None


def referenced_instances(header: dict[str, Any]) -> list[str]:
    """The SOP Instance UIDs a Key Object Selection references (Current Requested Procedure
    Evidence Sequence, PS3.3 C.17.2.1)."""
    uids = []
    for study in dj.items(header, "0040A375"):
        for series in dj.items(study, "00081115"):
            for sop in dj.items(series, "00081199"):
                uid = dj.text(sop, "00081155")
                if uid:
                    uids.append(uid)
    return uids
