"""HL7 v2 messages the archive sends to a RIS: procedure status updates (ORM^O01 as IHE RAD
TF-2 4.4 uses v2.3.1, or OMI^O23 of v2.5.1) and patient changes (ADT^A08, A40, A47).

Values are escaped (HL7 v2.5.1 2.7: ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``); DICOM PN
(family^given^middle^prefix^suffix) becomes XPN (family^given^middle^suffix^prefix);
messages are UTF-8 with MSH-18 ``UNICODE UTF-8``, segments separated by CR.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from openpacs.domain.hl7 import dtm
from openpacs.domain.orders import Code

_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def escape(value: str) -> str:
    """*value* as HL7 text: separators and the escape character escaped, line ends as \\.br\\."""
    for char, escaped in _ESCAPES:
        value = value.replace(char, escaped)
    return value.replace("\r\n", "\\.br\\").replace("\n", "\\.br\\").replace("\r", "\\.br\\")


def xpn(pn: str) -> str:
    """A DICOM PN (alphabetic group) as an HL7 XPN, each component escaped."""
    parts = (pn.split("=", maxsplit=1)[0].split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = parts
    return "^".join(escape(p) for p in (family, given, middle, suffix, prefix)).rstrip("^")


@dataclass(frozen=True)
class Envelope:
    """MSH values of an outbound message."""

    control_id: str
    now: datetime
    sending_application: str = "OPENPACS"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""


@dataclass(frozen=True)
class OutboundPatient:
    patient_id: str
    issuer: str = ""
    name: str = ""  # DICOM PN
    birth_date: str = ""
    sex: str = ""

    def pid(self) -> str:
        cx = escape(self.patient_id) + (f"^^^{escape(self.issuer)}^MR" if self.issuer else "^^^^MR")
        return f"PID|1||{cx}||{xpn(self.name)}||{escape(self.birth_date)}|{escape(self.sex)}"


def _msh(envelope: Envelope, kind: str, version: str) -> str:
    e = envelope
    return "|".join(
        [
            "MSH",
            "^~\\&",
            escape(e.sending_application),
            escape(e.sending_facility),
            escape(e.receiving_application),
            escape(e.receiving_facility),
            dtm(e.now),
            "",
            kind,
            escape(e.control_id),
            "P",
            version,
            "",
            "",
            "",
            "",
            "",
            "UNICODE UTF-8",
        ]
    )


@dataclass(frozen=True)
class StatusUpdate:
    """A procedure's status for the RIS (ORC-1 SC with ORC-5: IP in progress, CM completed,
    DC discontinued)."""

    order_status: str
    placer_order_number: str = ""
    filler_order_number: str = ""
    accession_number: str = ""
    requested_procedure_id: str = ""
    scheduled_step_id: str = ""
    study_instance_uid: str = ""
    modality: str = ""
    procedure_code: Code | None = None


def _code(code: Code | None) -> str:
    if code is None:
        return ""
    return f"{escape(code.value)}^{escape(code.meaning)}^{escape(code.scheme)}"


def status_message(structure: str, envelope: Envelope, patient: OutboundPatient, update: StatusUpdate) -> bytes:
    """ORM^O01 (``structure`` "ORM") or OMI^O23 ("OMI") carrying a status change."""
    u = update
    orc = f"ORC|SC|{escape(u.placer_order_number)}|{escape(u.filler_order_number)}||{escape(u.order_status)}"
    obr = ["OBR", "1", escape(u.placer_order_number), escape(u.filler_order_number), _code(u.procedure_code)]
    if structure == "OMI":
        segments = [
            _msh(envelope, "OMI^O23^OMI_O23", "2.5.1"),
            patient.pid(),
            orc,
            "TQ1|1",
            "|".join(obr),
            "|".join(
                [
                    "IPC",
                    escape(u.accession_number),
                    escape(u.requested_procedure_id),
                    escape(u.study_instance_uid),
                    escape(u.scheduled_step_id),
                    escape(u.modality),
                ]
            ),
        ]
    else:
        obr += [""] * 13 + [escape(u.accession_number), escape(u.requested_procedure_id), escape(u.scheduled_step_id)]
        obr += ["", "", "", escape(u.modality)]
        segments = [_msh(envelope, "ORM^O01", "2.3.1"), patient.pid(), orc, "|".join(obr)]
        if u.study_instance_uid:
            segments.append(f"ZDS|{escape(u.study_instance_uid)}^100^Application^DICOM")
    return ("\r".join(segments) + "\r").encode("utf-8")


def adt_message(trigger: str, envelope: Envelope, patient: OutboundPatient, previous: str = "") -> bytes:
    """ADT^A08 (update), ^A40 (merge *previous* into *patient*) or ^A47 (*previous* identifier
    changed to *patient*'s)."""
    structure = {"A08": "ADT_A01", "A40": "ADT_A39", "A47": "ADT_A30"}[trigger]
    segments = [
        _msh(envelope, f"ADT^{trigger}^{structure}", "2.5.1"),
        f"EVN|{trigger}|{dtm(envelope.now)}",
        patient.pid(),
    ]
    if trigger in ("A40", "A47"):
        issuer = f"^^^{escape(patient.issuer)}^MR" if patient.issuer else "^^^^MR"
        segments.append(f"MRG|{escape(previous)}{issuer}")
    return ("\r".join(segments) + "\r").encode("utf-8")
