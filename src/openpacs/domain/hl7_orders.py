"""Orders and results in HL7 v2 messages, read into the archive's order model.

- ORM^O01 (HL7 v2.3.1, IHE RAD TF-2 4.4): one ORC/OBR pair per scheduled step; the
  default fields are OBR-18 accession, OBR-19 requested procedure ID, OBR-20 scheduled step
  ID, OBR-24 modality, ORC-7.4 start, ORC-7.6 priority, OBR-44 (else OBR-4) procedure code,
  ORC-1 + ORC-5 control and status, ZDS-1 Study Instance UID.
- OMI^O23 (HL7 v2.5.1, IHE RAD TF-2 4.128): ORC, TQ1, OBR, then one IPC per scheduled step:
  IPC-1 accession, IPC-2 requested procedure ID, IPC-3 Study Instance UID, IPC-4 scheduled
  step ID, IPC-5 modality, IPC-6 protocol code, IPC-7 station name, IPC-8 location, IPC-9
  station AE titles, TQ1-7 start, TQ1-9 priority. An order group without IPC (some senders
  label an ORM-style message OMI) is read with the ORM fields.
- ORU^R01 (HL7 v2.5.1 chapter 7): one OBR per report; OBX of type TX, FT, ST give the text,
  an OBX of type ED a document (PDF, CDA), OBX 113014^DICOM Study the study UIDs;
  OBR-25 the result status.

Every field is a ``FieldSpec`` that a sender's configuration may replace (``mapping``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence

from openpacs.domain.hl7_adt import demographics, patient_identifier, person_name
from openpacs.domain.hl7_fields import FieldSpec, Segment, first_of, split_component
from openpacs.domain.orders import (
    CANCEL_CONTROLS,
    RESULT_STATUSES,
    Code,
    OrderEntry,
    PatientSnapshot,
    ProcedureEntry,
    ReportEntry,
    StepEntry,
    priority,
)


class OrderMessageError(ValueError):
    """A message whose fields cannot make an order or a report; ``location`` names the field."""

    def __init__(self, reason: str, location: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.location = location


def _specs(*names: str) -> tuple[FieldSpec, ...]:
    return tuple(FieldSpec.parse(n) for n in names)


#: Fields shared by both structures
COMMON: dict[str, tuple[FieldSpec, ...]] = {
    "order_control": _specs("ORC-1"),
    "order_status": _specs("ORC-5"),
    "placer_order_number": _specs("ORC-2.1", "OBR-2.1"),
    "filler_order_number": _specs("ORC-3.1", "OBR-3.1"),
    "requesting_physician": _specs("OBR-16", "ORC-12"),
    "referring_physician": _specs("PV1-8"),
    "department": _specs("ORC-17.2", "ORC-17.1", "PV1-3.1"),
    "admission_id": _specs("PV1-19.1", "PID-18.1"),
    "procedure_code": _specs("OBR-44", "OBR-4"),
    "performing_physician": _specs("OBR-34"),
}
ORM_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    **COMMON,
    "accession_number": _specs("OBR-18"),
    "requested_procedure_id": _specs("OBR-19"),
    "scheduled_step_id": _specs("OBR-20"),
    "modality": _specs("OBR-24"),
    "start": _specs("ORC-7.4", "OBR-27.4", "TQ1-7.1", "OBR-36"),
    "priority": _specs("ORC-7.6", "OBR-27.6", "TQ1-9.1", "OBR-5"),
    "study_instance_uid": _specs("ZDS-1.1"),
    "protocol_code": (),
    "station_ae_title": (),
    "station_name": (),
    "location": (),
}
OMI_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    **COMMON,
    "accession_number": _specs("IPC-1.1"),
    "requested_procedure_id": _specs("IPC-2"),
    "study_instance_uid": _specs("IPC-3.1"),
    "scheduled_step_id": _specs("IPC-4"),
    "modality": _specs("IPC-5.1"),
    "protocol_code": _specs("IPC-6"),
    "station_name": _specs("IPC-7"),
    "location": _specs("IPC-8"),
    "station_ae_title": _specs("IPC-9"),
    "start": _specs("TQ1-7.1", "ORC-7.4"),
    "priority": _specs("TQ1-9.1", "ORC-7.6"),
}
FIELD_NAMES = frozenset(ORM_FIELDS) | frozenset(OMI_FIELDS)


def mapping_with(overrides: Mapping[str, str | Sequence[str]]) -> dict[str, tuple[FieldSpec, ...]]:
    """The overrides of a sender's configuration, parsed (raises ValueError)."""
    out: dict[str, tuple[FieldSpec, ...]] = {}
    for name, specs in overrides.items():
        if name not in FIELD_NAMES:
            raise ValueError(f"{name!r} is not a mapped field (one of {', '.join(sorted(FIELD_NAMES))})")
        values = [specs] if isinstance(specs, str) else list(specs)
        out[name] = tuple(FieldSpec.parse(v) for v in values if v)
    return out


def _code(value_segment: Segment | None, spec: FieldSpec | None) -> Code | None:
    if value_segment is None or spec is None:
        return None
    value = value_segment.get(spec.field, 1)
    meaning = value_segment.get(spec.field, 2)
    scheme = value_segment.get(spec.field, 3)
    if not value and not meaning:
        return None
    return Code(value, meaning, scheme)


def _first_code(specs: Sequence[FieldSpec], scope: Sequence[Segment]) -> Code | None:
    for spec in specs:
        segment = next((s for s in scope if s.name == spec.segment), None)
        found = _code(segment, spec)
        if found is not None:
            return found
    return None


def date_time(dtm: str) -> tuple[str, str]:
    """(DA, TM) of an HL7 DTM; the time zone is dropped."""
    text = dtm.strip()
    for sign in ("+", "-"):
        at = text.find(sign, 8)
        if at > 0:
            text = text[:at]
    date, time = text[:8], text[8:14]
    if len(date) != 8 or not date.isdigit():
        return "", ""
    if time and not time.isdigit():
        time = ""
    return date, time.ljust(6, "0") if time else ""


def patient_of(scope: Sequence[Segment], *, default_issuer: str, authorities: dict[str, str]) -> PatientSnapshot:
    pid = next((s for s in scope if s.name == "PID"), None)
    if pid is None:
        raise OrderMessageError("the message has no PID segment", "PID")
    found = patient_identifier(
        pid.repetitions(3), default_issuer=default_issuer, authorities=authorities, component=pid.encoding.component
    )
    if found is None:
        raise OrderMessageError("PID-3 carries no identifier", "PID^1^3")
    values = demographics(pid, pid.encoding.component)
    return PatientSnapshot(
        found.value, found.issuer, values.get("PatientName", ""), values.get("PatientBirthDate", ""),
        values.get("PatientSex", ""),
    )  # fmt: skip


def _groups(segments: Sequence[Segment], starts: str) -> list[list[Segment]]:
    """Segments from each *starts* segment up to the next one."""
    groups: list[list[Segment]] = []
    for segment in segments:
        if segment.name == starts:
            groups.append([segment])
        elif groups:
            groups[-1].append(segment)
    return groups


def orders_of(
    segments: Sequence[Segment],
    *,
    default_issuer: str,
    authorities: dict[str, str],
    overrides: Mapping[str, tuple[FieldSpec, ...]] | None = None,
) -> list[OrderEntry]:
    """The orders of an ORM^O01 or OMI^O23 message, one per ORC group."""
    patient = patient_of(segments, default_issuer=default_issuer, authorities=authorities)
    header = [s for s in segments if s.name in ("MSH", "PID", "PV1", "PD1")]
    groups = _groups(segments, "ORC")
    if not groups:
        raise OrderMessageError("the message has no ORC segment", "ORC")
    orders: list[OrderEntry] = []
    for number, group in enumerate(groups, start=1):
        with_ipc = any(s.name == "IPC" for s in group)
        fields = dict(OMI_FIELDS if with_ipc else ORM_FIELDS)
        fields.update(overrides or {})
        scope = group + header
        control = first_of(fields["order_control"], scope).upper()
        order = OrderEntry(
            control=control,
            status=first_of(fields["order_status"], scope).upper(),
            placer_order_number=first_of(fields["placer_order_number"], scope),
            filler_order_number=first_of(fields["filler_order_number"], scope),
            patient=patient,
            requesting_physician=_name(first_raw(fields["requesting_physician"], scope), group[0]),
            referring_physician=_name(first_raw(fields["referring_physician"], scope), group[0]),
            department=first_of(fields["department"], scope),
            admission_id=first_of(fields["admission_id"], scope),
            priority=priority(first_of(fields["priority"], scope)),
        )
        if with_ipc:
            head = [s for s in group if s.name != "IPC"] + header
            for ipc in (s for s in group if s.name == "IPC"):
                _add_step(order, fields, [ipc, *head])
        else:
            _add_step(order, fields, scope)
        if not order.placer_order_number and not order.filler_order_number and not order.accession_number:
            raise OrderMessageError(
                f"order group {number} has no placer or filler order number and no accession number", "ORC^1^2"
            )
        orders.append(order)
    return orders


def first_raw(specs: Sequence[FieldSpec], scope: Sequence[Segment]) -> str:
    """The first non-empty value among *specs*, components kept (for names)."""
    for spec in specs:
        segment = next((s for s in scope if s.name == spec.segment), None)
        if segment is None:
            continue
        reps = segment.repetitions(spec.field)
        value = reps[0] if reps else ""
        if spec.component:
            value = split_component(value, segment.encoding, spec.component)
        if value.strip(segment.encoding.component + " "):
            return value
    return ""


def _name(xcn: str, segment: Segment) -> str:
    """An XCN (ID^family^given^middle^suffix^prefix) or XPN as a DICOM PN."""
    component = segment.encoding.component
    parts = xcn.split(component)
    if len(parts) > 1 and (not parts[0] or any(c.isdigit() for c in parts[0])):
        parts = parts[1:]  # XCN: the first component is the ID
    return segment.encoding.unescape(person_name(component.join(parts), component))


def _add_step(order: OrderEntry, fields: Mapping[str, tuple[FieldSpec, ...]], scope: list[Segment]) -> None:
    accession = first_of(fields["accession_number"], scope)
    procedure_id = first_of(fields["requested_procedure_id"], scope) or accession or order.placer_order_number
    code = _first_code(fields["procedure_code"], scope)
    procedure = next(
        (p for p in order.procedures if p.requested_procedure_id == procedure_id and p.accession_number == accession),
        None,
    )
    if procedure is None:
        procedure = ProcedureEntry(
            requested_procedure_id=procedure_id,
            accession_number=accession,
            study_instance_uid=first_of(fields["study_instance_uid"], scope),
            description=code.meaning if code else "",
            code=code,
            priority=order.priority,
        )
        order.procedures.append(procedure)
    start_date, start_time = date_time(first_of(fields["start"], scope))
    step_id = first_of(fields["scheduled_step_id"], scope) or f"{procedure_id}.{len(procedure.steps) + 1}"
    protocol = _first_code(fields["protocol_code"], scope)
    stations: tuple[str, ...] = ()
    for spec in fields["station_ae_title"]:
        stations = tuple(dict.fromkeys(v[:16] for v in spec.read_all(scope)))
        if stations:
            break
    procedure.steps.append(
        StepEntry(
            scheduled_step_id=step_id,
            modality=first_of(fields["modality"], scope).upper()[:16],
            station_ae_titles=stations,
            station_name=first_of(fields["station_name"], scope),
            location=first_of(fields["location"], scope),
            start_date=start_date,
            start_time=start_time,
            performing_physician=_name(first_raw(fields["performing_physician"], scope), scope[0]),
            description=(protocol.meaning if protocol else "") or (code.meaning if code else ""),
            protocol_code=protocol or code,
        )
    )


def is_cancel(order: OrderEntry) -> bool:
    return order.control in CANCEL_CONTROLS or (order.control == "SC" and order.status in ("CA", "DC"))


# -- results ----------------------------------------------------------------------------------

TEXT_TYPES = frozenset({"TX", "FT", "ST", "CE", "CWE", "NM", "SN", "TS", "DT"})
UID_OBSERVATIONS = frozenset({"113014"})  # DICOM Study (DCM)


def reports_of(segments: Sequence[Segment], *, default_issuer: str, authorities: dict[str, str]) -> list[ReportEntry]:
    """The reports of an ORU^R01 message, one per OBR group."""
    patient = patient_of(segments, default_issuer=default_issuer, authorities=authorities)
    groups = _groups(segments, "OBR")
    if not groups:
        raise OrderMessageError("the message has no OBR segment", "OBR")
    orc = next((s for s in segments if s.name == "ORC"), None)
    reports = []
    for group in groups:
        obr = group[0]
        lines: list[str] = []
        studies: list[str] = []
        document, content_type = b"", "text/plain"
        heading = ""
        for obx in (s for s in group if s.name == "OBX"):
            kind = obx.get(2).upper()
            observation = obx.get(3, 1)
            label = obx.get(3, 2)
            if observation in UID_OBSERVATIONS:
                uid = obx.get(5)
                if uid and uid not in studies:
                    studies.append(uid)
                continue
            if label.lower() in ("series instance uid", "sr instance uid", "sop instance uid"):
                continue
            if kind in {"ED", "RP"}:
                if kind == "ED" and not document:
                    document, content_type = _document(obx)
                continue
            if kind in TEXT_TYPES:
                value = obx.get(5, 2) if kind in ("CE", "CWE") else obx.get(5)
                if not value:
                    continue
                if label and label != heading:
                    lines.append(f"{label}:")
                    heading = label
                lines.append(value)
        code = obr.get(25).upper()
        placer = obr.get(2, 1) or (orc.get(2, 1) if orc else "")
        filler = obr.get(3, 1) or (orc.get(3, 1) if orc else "")
        if not (placer or filler or obr.get(18)):
            raise OrderMessageError("OBR has no placer or filler order number and no accession number", "OBR^1^2")
        if not lines and not document:
            raise OrderMessageError("the report has no text OBX and no document", "OBX^1^5")
        reports.append(
            ReportEntry(
                placer_order_number=placer,
                filler_order_number=filler,
                accession_number=obr.get(18),
                requested_procedure_id=obr.get(19),
                patient_id=patient.patient_id,
                issuer_of_patient_id=patient.issuer,
                result_status=code,
                status=RESULT_STATUSES.get(code, code.lower() or "final"),
                observed_at=obr.get(22, 1) or obr.get(7, 1),
                text="\n".join(lines),
                content_type=content_type if document else "text/plain",
                content=document if document else "\n".join(lines).encode("utf-8"),
                study_instance_uids=tuple(studies),
                verifier=_name(obr.get(32, 1).replace(obr.encoding.subcomponent, obr.encoding.component), obr),
            )
        )
    return reports


def _document(obx: Segment) -> tuple[bytes, str]:
    """The document of an ED value (source^type^subtype^encoding^data): data is taken as sent,
    after the fourth component separator, since a document may hold separator characters."""
    reps = obx.repetitions(5)
    value = reps[0] if reps else ""
    parts = value.split(obx.encoding.component, 4)
    if len(parts) < 5:
        raise OrderMessageError("OBX-5 of type ED has no data component", "OBX^1^5^1^5")
    kind, subtype, encoding = (obx.encoding.unescape(p).strip().upper() for p in parts[1:4])
    data = obx.encoding.unescape(parts[4])
    if encoding in ("BASE64", "B64"):
        try:
            content = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise OrderMessageError(f"OBX-5 is not valid Base64: {exc}", "OBX^1^5^1^5") from exc
    elif encoding == "HEX":
        try:
            content = bytes.fromhex("".join(data.split()))
        except ValueError as exc:
            raise OrderMessageError(f"OBX-5 is not valid hexadecimal: {exc}", "OBX^1^5^1^5") from exc
    else:
        content = data.encode("utf-8")
    if subtype == "PDF" or content.startswith(b"%PDF"):
        return content, "application/pdf"
    if "XML" in subtype or content.lstrip().startswith(b"<"):
        return content, "text/xml"
    return content, f"{kind.lower() or 'application'}/{subtype.lower() or 'octet-stream'}"
