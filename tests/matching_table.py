"""The table of C-FIND matching cases (PS3.4 C.2.2.2), shared by the index contract tests
and the integration tests over the wire: the same queries, the same expected answers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
US = "1.2.840.10008.5.1.4.1.1.6.1"
CR = "1.2.840.10008.5.1.4.1.1.1"
MODALITY_CLASS = {"CT": CT, "MR": MR, "US": US, "CR": CR}

ROOT = "1.2.826.0.1.3680043.10.1151.7"  # test-only UID root


@dataclass(frozen=True)
class Study:
    key: str  # short name used in the table
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    date: str
    time: str
    accession: str
    description: str
    referring: str
    modalities: tuple[str, ...]
    charset: str = ""

    @property
    def uid(self) -> str:
        return f"{ROOT}.{ord(self.key[0])}{self.key[1:]}"


STUDIES: list[Study] = [
    Study("S1", "PID1", "Doe^John", "19700101", "M", "20240110", "081500", "A1", "CT HEAD", "Smith^Anna", ("CT",)),
    Study("S2", "PID1", "Doe^John", "19700101", "M", "20240315", "143000", "A2", "MR KNEE LEFT", "Smith^Anna", ("MR",)),
    Study("S3", "PID2", "DOE^JANE", "19801231", "F", "20231201", "235959", "B7", "CT CHEST", "Jones^Bob", ("CT", "MR")),
    Study(
        "S4",
        "PID3",
        "Müller^Jürgen",
        "19551105",
        "M",
        "20240110",
        "000001",
        "A3",
        "US ABDOMEN",
        "Weiß^Eva",
        ("US",),
        "ISO_IR 100",
    ),
    Study(
        "S5", "PID4", "Ó Briain^Seán", "19920630", "M", "20220101", "120000", "C9", "CR HAND", "", ("CR",), "ISO_IR 192"
    ),
    Study("S6", "PID5", "Smith^Jo", "20000229", "O", "20240110", "120000", "Z1", "CR CHEST", "", ("CR",)),
]


def instances() -> list[tuple[str, bytes]]:
    """(SOP Instance UID, Part 10 bytes) for every series of every study: one instance each."""
    out = []
    for study in STUDIES:
        for n, modality in enumerate(study.modalities, start=1):
            ds = Dataset()
            if study.charset:
                ds.SpecificCharacterSet = study.charset
            ds.SOPClassUID = MODALITY_CLASS[modality]
            ds.SOPInstanceUID = f"{study.uid}.{n}.1"
            ds.StudyInstanceUID = study.uid
            ds.SeriesInstanceUID = f"{study.uid}.{n}"
            ds.PatientID = study.patient_id
            ds.PatientName = study.patient_name
            ds.PatientBirthDate = study.birth_date
            ds.PatientSex = study.sex
            ds.StudyDate = study.date
            ds.StudyTime = study.time
            ds.AccessionNumber = study.accession
            ds.StudyDescription = study.description
            ds.ReferringPhysicianName = study.referring
            ds.StudyID = study.key
            ds.Modality = modality
            ds.SeriesNumber = n
            ds.SeriesDescription = f"{modality} series {n}"
            ds.InstanceNumber = 1
            ds.Rows = 2
            ds.Columns = 2
            ds.BitsAllocated = 16
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.PixelRepresentation = 0
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.PixelData = b"\x00\x01" * 4
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            out.append((str(ds.SOPInstanceUID), buffer.getvalue()))
    return out


@dataclass(frozen=True)
class Case:
    name: str
    level: str
    keys: dict[str, str]
    expected: set[str]  # study keys (STUDY), patient IDs (PATIENT), series UIDs suffix (SERIES)
    charset: str = ""


def uid(key: str) -> str:
    return next(s.uid for s in STUDIES if s.key == key)


CASES: list[Case] = [
    Case("universal", "STUDY", {"PatientID": ""}, {"S1", "S2", "S3", "S4", "S5", "S6"}),
    Case("single value", "STUDY", {"PatientID": "PID1"}, {"S1", "S2"}),
    Case("person name, any case", "STUDY", {"PatientName": "doe^john"}, {"S1", "S2"}),
    Case("person name, trailing carets", "STUDY", {"PatientName": "Doe^John^^"}, {"S1", "S2"}),
    Case("wildcard *", "STUDY", {"PatientName": "DOE*"}, {"S1", "S2", "S3"}),
    Case("wildcard ?", "STUDY", {"PatientName": "Do?^J*"}, {"S1", "S2", "S3"}),
    Case("star alone is universal", "STUDY", {"PatientName": "*"}, {"S1", "S2", "S3", "S4", "S5", "S6"}),
    Case("latin-1 name", "STUDY", {"PatientName": "Müller^Jürgen"}, {"S4"}, "ISO_IR 100"),
    Case("latin-1 wildcard", "STUDY", {"PatientName": "M*ller*"}, {"S4"}, "ISO_IR 100"),
    Case("utf-8 name", "STUDY", {"PatientName": "Ó Briain^Seán"}, {"S5"}, "ISO_IR 192"),
    Case("date", "STUDY", {"StudyDate": "20240110"}, {"S1", "S4", "S6"}),
    Case("date range", "STUDY", {"StudyDate": "20240101-20240131"}, {"S1", "S4", "S6"}),
    Case("date range open start", "STUDY", {"StudyDate": "-20231231"}, {"S3", "S5"}),
    Case("date range open end", "STUDY", {"StudyDate": "20240301-"}, {"S2"}),
    Case("time range", "STUDY", {"StudyTime": "0800-0900"}, {"S1"}),
    Case("date and time", "STUDY", {"StudyDate": "20240110", "StudyTime": "-120000"}, {"S1", "S4", "S6"}),
    Case("time partial", "STUDY", {"StudyTime": "12"}, {"S5", "S6"}),
    Case("birth date range", "STUDY", {"PatientBirthDate": "19700101-19801231"}, {"S1", "S2", "S3"}),
    Case("modalities in study", "STUDY", {"ModalitiesInStudy": "MR"}, {"S2", "S3"}),
    Case("modalities list", "STUDY", {"ModalitiesInStudy": "US\\CR"}, {"S4", "S5", "S6"}),
    Case("uid list", "STUDY", {"StudyInstanceUID": f"{uid('S1')}\\{uid('S3')}"}, {"S1", "S3"}),
    Case("accession wildcard", "STUDY", {"AccessionNumber": "A*"}, {"S1", "S2", "S4"}),
    Case("description contains", "STUDY", {"StudyDescription": "*CHEST*"}, {"S3", "S6"}),
    Case("referring physician", "STUDY", {"ReferringPhysicianName": "smith^anna"}, {"S1", "S2"}),
    Case("sex", "STUDY", {"PatientSex": "F"}, {"S3"}),
    Case("two keys", "STUDY", {"PatientName": "DOE*", "ModalitiesInStudy": "CT"}, {"S1", "S3"}),
    Case("no match", "STUDY", {"PatientID": "NOBODY"}, set()),
    Case("patient level", "PATIENT", {"PatientName": "D*"}, {"PID1", "PID2"}),
    Case("patient level date", "PATIENT", {"PatientBirthDate": "-19600101"}, {"PID3"}),
    Case("series modality", "SERIES", {"StudyInstanceUID": uid("S3"), "Modality": "MR"}, {"S3.2"}),
    Case("series description", "SERIES", {"SeriesDescription": "CT*"}, {"S1.1", "S3.1"}),
]


def series_key(series_uid: str) -> str:
    """'S3.2' for the second series of study S3."""
    for study in STUDIES:
        if series_uid.startswith(study.uid + "."):
            return f"{study.key}.{series_uid[len(study.uid) + 1 :]}"
    return series_uid


def study_key(study_uid: str) -> str:
    return next((s.key for s in STUDIES if s.uid == study_uid), study_uid)
