"""Query identifiers on the wire (PS3.4 C.4.1.1.3): decoding, and encoding answers.

Answers keep the character set of the query when every value fits in it, and use
ISO_IR 192 (UTF-8) otherwise, so that names arrive intact (PS3.5 6.1). Answers are
encoded here (0.05 ms against 0.8 ms per answer through pydicom's Dataset, measured in
bench/ and docs/performance.md, which a query with many answers pays for each); character sets that need ISO 2022 escape
sequences go through pydicom. A test checks both encodings against each other.
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.valuerep import format_number_as_ds

from openpacs.domain import dicom_json as dj
from openpacs.domain import transfer_syntaxes as tsx
from openpacs.domain.part10 import parse_dataset

_CHARSET = "00080005"
_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})


def decode_identifier(data: bytes, transfer_syntax_uid: str) -> dict[str, Any]:
    """A received identifier as DICOM JSON (raises InvalidInstance when malformed)."""
    return parse_dataset(data, transfer_syntax_uid)


def _texts(ds: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for element in ds.values():
        vr = element.get("vr")
        if vr == "SQ":
            for item in element.get("Value") or []:
                found.extend(_texts(item))
        elif vr in _TEXT_VRS:
            for value in element.get("Value") or []:
                if isinstance(value, dict):
                    found.append(dj.person_name_text(value))
                elif value is not None:
                    found.append(str(value))
    return found


def answer_charset(answer: dict[str, Any], requested: list[str]) -> list[str]:
    """The Specific Character Set of an answer (empty: default repertoire)."""
    texts = _texts(answer)
    if all(t.isascii() for t in texts):
        return requested
    if len(requested) == 1:
        codec = python_encoding.get(requested[0])
        if codec is not None:
            try:
                for t in texts:
                    t.encode(codec)
                return requested
            except UnicodeEncodeError:
                pass
    return ["ISO_IR 192"]


#: Character sets whose Python codec encodes each value on its own (no ISO 2022 escapes)
_SIMPLE_CHARSETS = {
    "": "ascii",
    "ISO_IR 6": "ascii",
    "ISO_IR 100": "latin_1",
    "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO_IR 126": "iso8859_7",
    "ISO_IR 127": "iso8859_6",
    "ISO_IR 138": "iso8859_8",
    "ISO_IR 144": "iso8859_5",
    "ISO_IR 148": "iso8859_9",
    "ISO_IR 166": "tis_620",
    "ISO_IR 192": "utf-8",
    "GB18030": "gb18030",
    "GBK": "gbk",
}
_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}


class _Encoder:
    """DICOM JSON to an encoded data set (PS3.5 7.1), for answers: small, flat, ours."""

    def __init__(self, implicit: bool, little: bool, codec: str) -> None:
        self.implicit = implicit
        self.endian = "<" if little else ">"
        self.codec = codec

    def dataset(self, ds: dict[str, Any]) -> bytes:
        return b"".join(self.element(int(key, 16), element) for key, element in sorted(ds.items()))

    def value(self, vr: str, values: list[Any]) -> bytes:
        if vr == "SQ":
            items = [self.dataset(item) for item in values if isinstance(item, dict)]
            return b"".join(struct.pack(self.endian + "HHL", 0xFFFE, 0xE000, len(i)) + i for i in items)
        if vr in _STRING_VRS:
            texts = []
            for v in values:
                if v is None:
                    texts.append("")
                elif vr == "PN" and isinstance(v, dict):
                    texts.append(dj.person_name_text(v))
                elif vr == "DS" and not isinstance(v, str):
                    texts.append(format_number_as_ds(float(v)))
                else:
                    texts.append(str(v))
            joined = "\\".join(texts)
            raw = joined.encode(self.codec if vr in _TEXT_VRS else "ascii")
            if len(raw) % 2:
                raw += b"\x00" if vr == "UI" else b" "
            return raw
        fmt = _NUMBERS.get(vr)
        if fmt is not None:
            return struct.pack(f"{self.endian}{len(values)}{fmt}", *values)
        if vr == "AT":
            tags = [int(str(v), 16) for v in values]
            return b"".join(struct.pack(self.endian + "HH", t >> 16, t & 0xFFFF) for t in tags)
        raise ValueError(f"cannot encode VR {vr} in an answer")

    def element(self, tag: int, element: dict[str, Any]) -> bytes:
        vr = str(element.get("vr", "UN"))
        if "InlineBinary" in element:
            raw = base64.b64decode(element["InlineBinary"])
            if len(raw) % 2:
                raw += b"\x00"
        elif "Value" in element and element["Value"] is not None:
            raw = self.value(vr, list(element["Value"]))
        else:
            raw = b""
        group, elem = tag >> 16, tag & 0xFFFF
        if self.implicit:
            return struct.pack(self.endian + "HHL", group, elem, len(raw)) + raw
        if vr in _LONG_VRS:
            return struct.pack(self.endian + "HH2sHL", group, elem, vr.encode(), 0, len(raw)) + raw
        return struct.pack(self.endian + "HH2sH", group, elem, vr.encode(), len(raw)) + raw


def encode_identifier(answer: dict[str, Any], transfer_syntax_uid: str, charset: list[str]) -> bytes:
    """Encode an answer (DICOM JSON) as a data set in the context's transfer syntax."""
    codec = _SIMPLE_CHARSETS.get(charset[0] if len(charset) == 1 else "" if not charset else "-")
    if codec is not None:
        body = dict(answer)
        body.pop(_CHARSET, None)
        if charset and charset[0]:
            body[_CHARSET] = {"vr": "CS", "Value": list(charset)}
        try:
            data = _Encoder(
                transfer_syntax_uid == tsx.IMPLICIT_LE, transfer_syntax_uid != tsx.EXPLICIT_BE, codec
            ).dataset(body)
        except (UnicodeEncodeError, ValueError, struct.error, TypeError):
            data = None
        if data is not None:
            return _deflate(data) if transfer_syntax_uid == tsx.DEFLATED_LE else data
    return _encode_with_pydicom(answer, transfer_syntax_uid, charset)


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _encode_with_pydicom(answer: dict[str, Any], transfer_syntax_uid: str, charset: list[str]) -> bytes:
    """pydicom's encoding, for the character sets that need ISO 2022 escapes."""
    ds: Dataset = dj.to_dataset({k: v for k, v in answer.items() if k != _CHARSET})
    if charset and any(charset):
        ds.SpecificCharacterSet = charset if len(charset) > 1 else charset[0]
    fp = DicomBytesIO()
    fp.is_little_endian = transfer_syntax_uid != tsx.EXPLICIT_BE
    fp.is_implicit_VR = transfer_syntax_uid == tsx.IMPLICIT_LE
    ds.set_original_encoding(fp.is_implicit_VR, fp.is_little_endian, charset or None)
    write_dataset(fp, ds)
    data = bytes(fp.getvalue())
    return _deflate(data) if transfer_syntax_uid == tsx.DEFLATED_LE else data
