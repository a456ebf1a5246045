"""Query identifiers on the wire (PS3.4 C.4.1.1.3): decoding, and encoding answers.

Answers keep the character set of the query when every value fits in it, and use
ISO_IR 192 (UTF-8) otherwise, so that names arrive intact (PS3.5 6.1).
"""

from __future__ import annotations

import zlib
from typing import Any

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

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


def encode_identifier(answer: dict[str, Any], transfer_syntax_uid: str, charset: list[str]) -> bytes:
    """Encode an answer (DICOM JSON) as a data set in the context's transfer syntax."""
    ds: Dataset = dj.to_dataset({k: v for k, v in answer.items() if k != _CHARSET})
    if charset and any(charset):
        ds.SpecificCharacterSet = charset if len(charset) > 1 else charset[0]
    fp = DicomBytesIO()
    fp.is_little_endian = transfer_syntax_uid != tsx.EXPLICIT_BE
    fp.is_implicit_VR = transfer_syntax_uid == tsx.IMPLICIT_LE
    ds.set_original_encoding(fp.is_implicit_VR, fp.is_little_endian, charset or None)
    write_dataset(fp, ds)
    data = fp.getvalue()
    if transfer_syntax_uid == tsx.DEFLATED_LE:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
    return bytes(data)
