"""Vetting and header extraction of a DICOM Part 10 stream (PS3.10 7.1, PS3.5 7).

One pass over the bytes as received: the File Meta Information, then every element of
the data set down to the end, walking element lengths (sequences and encapsulated pixel
data included) without decoding pixels. A stream that ends inside an element, or whose
sequences nest deeper than allowed, is refused. The result carries the data set as
DICOM JSON (PS3.18 F.2), with every binary value longer than the bulk data threshold
replaced by a ``BulkDataURI`` of the form ``bytes=FIRST-LAST`` that addresses the value
inside the stored file, so that bulk data can be served by range without parsing.

The JSON is identical to pydicom's ``Dataset.to_json_dict`` (tests compare them on every
sample file); the common value representations are converted here directly, because
pydicom's general path costs about 40 microseconds per element (ADR 0004), and the rare
ones (ambiguous VRs, private tags of implicit VR data sets, non-ASCII person names,
malformed values) are handed to pydicom element by element.
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from openpacs.domain.errors import InstanceTooLarge, InvalidInstance

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_FORMATS = {
    "US": "H",
    "SS": "h",
    "UL": "L",
    "SL": "l",
    "FL": "f",
    "FD": "d",
    "SV": "q",
    "UV": "Q",
}
_NUMBER_SIZES = {"H": 2, "h": 2, "L": 4, "l": 4, "f": 4, "d": 8, "q": 8, "Q": 8}
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_CHARSET = 0x00080005
_DEFAULT_CHARSET = ["iso8859"]

#: Our Implementation Class UID (a UUID-derived UID, PS3.5 B.2) and Implementation Version Name.
IMPLEMENTATION_CLASS_UID = "2.25.233488491843405934413870633584011376347"
IMPLEMENTATION_VERSION = "OPENPACS_010"

_VR_NAMES: dict[bytes, str] = {
    name.encode(): name
    for name in [
        "AE",
        "AS",
        "AT",
        "CS",
        "DA",
        "DS",
        "DT",
        "FD",
        "FL",
        "IS",
        "LO",
        "LT",
        "OB",
        "OD",
        "OF",
        "OL",
        "OV",
        "OW",
        "PN",
        "SH",
        "SL",
        "SQ",
        "SS",
        "ST",
        "SV",
        "TM",
        "UC",
        "UI",
        "UL",
        "UN",
        "UR",
        "US",
        "UT",
        "UV",
    ]
}

_FAST_TEXT: dict[str, Any] = {}
#: VRs whose values are encoded in the Specific Character Set (PS3.5 6.1.2.3)
_CHARSET_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})

#: tag -> (JSON key, dictionary VR or "?", whether pydicom needs it as context)
_TAG_INFO: dict[int, tuple[str, str, bool]] = {}


def _tag_info(tag: int) -> tuple[str, str, bool]:  # filled lazily: the dictionary is large
    info = (f"{tag:08X}", _dictionary_vr(tag) or "?", tag == _CHARSET or _is_context(tag))
    if len(_TAG_INFO) < 200_000:
        _TAG_INFO[tag] = info
    return info


@dataclass(frozen=True)
class ParsedInstance:
    """What ingest needs from a vetted Part 10 stream."""

    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    header: dict[str, Any]
    meta: dict[str, Any]
    dataset_offset: int
    has_meta: bool = True


class _Deferred(Exception):
    """A value the fast path leaves to pydicom."""


@dataclass
class _Scope:
    """Per data set (top level or sequence item) state of the walk.

    ``context`` holds the small elements pydicom needs to resolve a deferred element:
    Specific Character Set, the Image Pixel module's BitsAllocated and
    PixelRepresentation, and private creators; items inherit their parent's.
    """

    encodings: list[str]
    context: dict[int, RawDataElement] = field(default_factory=dict)
    deferred: list[tuple[int, str, int, int]] = field(default_factory=list)


def _is_context(tag: int) -> bool:
    group, elem = tag >> 16, tag & 0xFFFF
    if group == 0x0028:
        return elem in (0x0100, 0x0103)
    return bool(group & 1) and 0x10 <= elem <= 0xFF


class _Walker:
    """Walks one encoded data set. Offsets in BulkDataURIs are relative to ``base``."""

    def __init__(
        self,
        buf: bytes,
        *,
        implicit: bool,
        little: bool,
        bulk_threshold: int,
        max_depth: int,
        base: int | None,
    ) -> None:
        self.buf = buf
        self.implicit = implicit
        self.little = little
        self.endian = "<" if little else ">"
        self.hh = struct.Struct(self.endian + "HH")
        self.implicit_header = struct.Struct(self.endian + "HHL")
        self.explicit_header = struct.Struct(self.endian + "HH2sH")
        self.h = struct.Struct(self.endian + "H")
        self.long = struct.Struct(self.endian + "L")
        self.bulk_threshold = bulk_threshold
        self.max_depth = max_depth
        self.base = base

    # -- structure -------------------------------------------------------------------

    def _truncated(self, tag: int, what: str = "element") -> InvalidInstance:
        return InvalidInstance(
            f"data set is truncated or malformed: {what} ({tag >> 16:04X},{tag & 0xFFFF:04X}) "
            "runs past the end of the data"
        )

    def walk(
        self, pos: int, end: int, depth: int, parent: _Scope | None, until_item_end: bool = False
    ) -> tuple[dict[str, Any], int]:
        """Parse elements from *pos* to *end* (or to an item delimiter); return JSON and position."""
        if depth > self.max_depth:
            raise InstanceTooLarge(f"sequences nest deeper than {self.max_depth} levels")
        buf = self.buf
        out: dict[str, Any] = {}
        scope = (
            _Scope(encodings=parent.encodings, context=dict(parent.context))
            if parent
            else _Scope(encodings=_DEFAULT_CHARSET)
        )
        implicit = self.implicit
        long_unpack = self.long.unpack_from
        explicit_unpack = self.explicit_header.unpack_from
        tag_info = _TAG_INFO
        while pos < end:
            if pos + 8 > end:
                raise InvalidInstance(f"data set is truncated: {end - pos} trailing bytes at offset {pos}")
            if implicit:
                group, elem, length = self.implicit_header.unpack_from(buf, pos)
                vr = ""
                pos += 8
            else:
                group, elem, vr_bytes, length = explicit_unpack(buf, pos)
                vr = _VR_NAMES.get(vr_bytes, "")
                if vr in _LONG_VRS:
                    if pos + 12 > end:
                        raise self._truncated(group << 16 | elem)
                    (length,) = long_unpack(buf, pos + 8)
                    pos += 12
                elif vr:
                    pos += 8
                elif group != 0xFFFE:
                    raise InvalidInstance(
                        f"invalid VR {vr_bytes!r} for element ({group:04X},{elem:04X}) at offset {pos}"
                    )
                else:
                    (length,) = long_unpack(buf, pos + 4)
                    pos += 8
            tag = group << 16 | elem
            if group == 0xFFFE:
                if tag == _ITEM_END and until_item_end:
                    return out, pos
                raise InvalidInstance(f"unexpected item tag ({group:04X},{elem:04X}) at offset {pos - 8}")
            info = tag_info.get(tag)
            if info is None:
                info = _tag_info(tag)
            key, dict_vr, context = info
            if length == _UNDEFINED:
                out[key], pos = self._undefined_length(tag, vr or dict_vr, pos, end, depth, scope)
                continue
            value_end = pos + length
            if value_end > end:
                raise self._truncated(tag)
            if not vr:
                vr = dict_vr if dict_vr != "?" else ("" if group & 1 else ("UL" if elem == 0 else "UN"))
            converter = _FAST_TEXT.get(vr)
            if converter is not None and length:
                try:
                    text = buf[pos:value_end].decode("ascii")
                    if "\x1b" in text and vr in _CHARSET_VRS:
                        raise ValueError("ISO 2022 escape sequence")
                    out[key] = converter(vr, text)
                except (UnicodeDecodeError, ValueError):
                    # non-ASCII or ISO 2022 text needs the character set; odd numbers pydicom's rules
                    self._defer(scope, tag, vr, pos, length)
                    out[key] = None
            elif vr == "SQ":
                out[key] = self._sequence(tag, pos, value_end, depth, scope, False)
            elif vr == "UN" and not group & 1 and dict_vr not in ("?", "UN"):
                # PS3.5 6.2.2: pydicom replaces UN by the dictionary VR; a known SQ keeps
                # its implicit VR little endian encoding
                if dict_vr == "SQ":
                    out[key] = self._sequence(tag, pos, value_end, depth, scope, True)
                elif length < 0xFFFF:
                    self._defer(scope, tag, "", pos, length)
                    out[key] = None
                else:
                    out[key] = self._binary("UN", pos, length)
            elif not vr or " " in vr or (vr == "UN" and group & 1):
                # ambiguous, or private without a known VR: pydicom resolves it
                self._defer(scope, tag, vr, pos, length)
                out[key] = None
            else:
                try:
                    out[key] = self._value(tag, vr, pos, length)
                except _Deferred:
                    self._defer(scope, tag, vr, pos, length)
                    out[key] = None
            if context:
                scope.context[tag] = self._raw(tag, vr, pos, length)
                if tag == _CHARSET:
                    scope.encodings = _encodings(out[key])
            pos = value_end
        if until_item_end:
            raise InvalidInstance("data set is truncated: a sequence item has no end")
        if scope.deferred:
            self._resolve_deferred(out, scope)
        return out, pos

    def _undefined_length(
        self, tag: int, vr: str, pos: int, end: int, depth: int, scope: _Scope
    ) -> tuple[dict[str, Any], int]:
        explicit_vr = vr
        if not vr:
            vr = _dictionary_vr(tag) or "UN"
        if tag == _PIXEL_DATA or (vr in _BINARY_VRS and vr != "UN"):
            # encapsulated pixel data (PS3.5 A.4): walk items to the sequence delimiter
            start = pos
            while True:
                if pos + 8 > end:
                    raise self._truncated(tag, "encapsulated value")
                group, elem = self.hh.unpack_from(self.buf, pos)
                (length,) = self.long.unpack_from(self.buf, pos + 4)
                item = group << 16 | elem
                pos += 8
                if item == _SEQUENCE_END:
                    break
                if item != _ITEM or length == _UNDEFINED or pos + length > end:
                    raise self._truncated(tag, "encapsulated value")
                pos += length
            vr = explicit_vr if explicit_vr in _BINARY_VRS and explicit_vr != "UN" else "OB"
            return self._binary(vr, start, pos - 8 - start), pos
        # SQ, or UN of undefined length, which PS3.5 6.2.2 encodes as implicit VR SQ
        implicit_before = self.implicit
        if vr == "UN":
            self.implicit = True
        try:
            items, pos = self._items(tag, pos, end, depth, scope, until_delimiter=True)
        finally:
            self.implicit = implicit_before
        return {"vr": "SQ", "Value": items}, pos

    def _sequence(
        self, tag: int, pos: int, end: int, depth: int, scope: _Scope, implicit_items: bool
    ) -> dict[str, Any]:
        implicit_before = self.implicit
        if implicit_items:
            self.implicit = True
        try:
            items, _ = self._items(tag, pos, end, depth, scope, until_delimiter=False)
        finally:
            self.implicit = implicit_before
        return {"vr": "SQ", "Value": items}

    def _items(
        self, tag: int, pos: int, end: int, depth: int, scope: _Scope, *, until_delimiter: bool
    ) -> tuple[list[dict[str, Any]], int]:
        items: list[dict[str, Any]] = []
        while pos < end:
            if pos + 8 > end:
                raise self._truncated(tag, "sequence")
            group, elem = self.hh.unpack_from(self.buf, pos)
            (length,) = self.long.unpack_from(self.buf, pos + 4)
            item = group << 16 | elem
            pos += 8
            if item == _SEQUENCE_END:
                return items, pos
            if item != _ITEM:
                raise InvalidInstance(
                    f"sequence ({tag >> 16:04X},{tag & 0xFFFF:04X}) holds ({group:04X},{elem:04X}) "
                    "where an item was expected"
                )
            if length == _UNDEFINED:
                content, pos = self.walk(pos, end, depth + 1, scope, until_item_end=True)
            else:
                if pos + length > end:
                    raise self._truncated(tag, "sequence item of")
                content, pos = self.walk(pos, pos + length, depth + 1, scope)
            items.append(content)
        if until_delimiter:
            raise self._truncated(tag, "sequence")
        return items, pos

    # -- values ----------------------------------------------------------------------

    def _implicit_vr(self, tag: int) -> str:
        vr = _dictionary_vr(tag)
        if vr is not None:
            return vr
        if tag & 0x10000:
            return ""  # private: resolved by pydicom with its private dictionary
        return "UL" if tag & 0xFFFF == 0 else "UN"

    def _raw(self, tag: int, vr: str, pos: int, length: int) -> RawDataElement:
        return RawDataElement(
            Tag(tag),
            vr or None,
            length,
            bytes(self.buf[pos : pos + length]),
            pos,
            self.implicit,
            self.little,
        )

    def _defer(self, scope: _Scope, tag: int, vr: str, pos: int, length: int) -> None:
        scope.deferred.append((tag, vr if vr and " " not in vr else "", pos, length))

    def _resolve_deferred(self, out: dict[str, Any], scope: _Scope) -> None:
        """Let pydicom convert the deferred elements, in a data set with their context."""
        ds = Dataset()
        ds.set_original_encoding(self.implicit, self.little)
        for tag, raw in scope.context.items():
            ds[tag] = raw
        for tag, vr, pos, length in scope.deferred:
            big = length > self.bulk_threshold
            ds[tag] = RawDataElement(
                Tag(tag),
                vr or None,
                0 if big else length,
                b"" if big else bytes(self.buf[pos : pos + length]),
                pos,
                self.implicit,
                self.little,
            )
        for tag, _vr, pos, length in scope.deferred:
            key = f"{tag:08X}"
            try:
                element = ds[tag]
                vr = str(element.VR)
                if vr in _BINARY_VRS or " " in vr:
                    out[key] = self._binary(vr if " " not in vr else "OB", pos, length)
                elif length > self.bulk_threshold:
                    out[key] = self._binary("UN", pos, length)
                else:
                    out[key] = element.to_json_dict(None, 1 << 30)
            except Exception:
                out[key] = self._binary("UN", pos, length)

    def _binary(self, vr: str, pos: int, length: int) -> dict[str, Any]:
        if length == 0:
            return {"vr": vr}
        if length > self.bulk_threshold:
            return self._bulk(vr, pos, length)
        return {
            "vr": vr,
            "InlineBinary": base64.b64encode(self.buf[pos : pos + length]).decode("ascii"),
        }

    def _bulk(self, vr: str, pos: int, length: int) -> dict[str, Any]:
        if self.base is None:
            return {"vr": vr, "BulkDataURI": ""}
        first = self.base + pos
        return {"vr": vr, "BulkDataURI": f"bytes={first}-{first + length - 1}"}

    def _value(self, tag: int, vr: str, pos: int, length: int) -> dict[str, Any]:
        if length == 0:
            return {"vr": vr}
        if vr in _BINARY_VRS:
            return self._binary(vr, pos, length)
        raw = self.buf[pos : pos + length]
        fmt = _NUMBER_FORMATS.get(vr)
        if fmt is not None:
            size = _NUMBER_SIZES[fmt]
            if length % size:
                raise _Deferred
            values = list(struct.unpack(f"{self.endian}{length // size}{fmt}", raw))
            if fmt in "fd":
                return {"vr": vr, "Value": [float(v) for v in values]}
            return {"vr": vr, "Value": values}
        if vr == "AT":
            if length % 4:
                raise _Deferred
            pairs = struct.unpack(f"{self.endian}{length // 2}H", raw)
            return {
                "vr": vr,
                "Value": [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2)],
            }
        raise _Deferred


def _pn_json(components: tuple[str, ...] | list[str]) -> dict[str, str]:
    result = {"Alphabetic": components[0]}
    if len(components) > 1:
        result["Ideographic"] = components[1]
    if len(components) > 2:
        result["Phonetic"] = components[2]
    return result


def _split_rstrip(vr: str, text: str) -> dict[str, Any]:
    """AS, CS, DA, DT, TM (and UI): pydicom's ``multi_string``."""
    values = text.rstrip(" \x00").split("\\")
    if len(values) == 1 and not values[0]:
        return {"vr": vr}
    return {"vr": vr, "Value": values}


def _split_each_rstrip(vr: str, text: str) -> dict[str, Any]:
    """LO, SH, UC: pydicom's ``convert_text``."""
    values = [v.rstrip("\x00 ") for v in text.split("\\")]
    if len(values) == 1 and not values[0]:
        return {"vr": vr}
    return {"vr": vr, "Value": values}


def _single_rstrip(vr: str, text: str) -> dict[str, Any]:
    """LT, ST, UT: one value, trailing padding removed."""
    value = text.rstrip("\x00 ")
    return {"vr": vr, "Value": [value]} if value else {"vr": vr}


def _ur(vr: str, text: str) -> dict[str, Any]:
    value = text.rstrip()
    return {"vr": vr, "Value": [value]} if value else {"vr": vr}


def _ae(vr: str, text: str) -> dict[str, Any]:
    values = [v.strip() for v in text.split("\\")]
    if len(values) == 1 and not values[0]:
        return {"vr": vr}
    return {"vr": vr, "Value": values}


def _pn(vr: str, text: str) -> dict[str, Any]:
    values = [_pn_json(v.split("=")) for v in text.rstrip("\x00 ").split("\\")]
    if len(values) == 1 and len(values[0]) == 1 and not values[0]["Alphabetic"]:
        return {"vr": vr}
    return {"vr": vr, "Value": values}


def _is(vr: str, text: str) -> dict[str, Any]:
    parts = text.rstrip(" \x00").split("\\")
    if len(parts) == 1 and not parts[0].strip():
        return {"vr": vr}
    return {"vr": vr, "Value": [int(p) for p in parts]}


def _ds(vr: str, text: str) -> dict[str, Any]:
    parts = text.strip().rstrip(" \x00").split("\\")
    if len(parts) == 1 and not parts[0]:
        return {"vr": vr}
    return {"vr": vr, "Value": [float(p) for p in parts]}


_FAST_TEXT.update(
    {
        **dict.fromkeys(("AS", "CS", "DA", "DT", "TM", "UI"), _split_rstrip),
        **dict.fromkeys(("LO", "SH", "UC"), _split_each_rstrip),
        **dict.fromkeys(("LT", "ST", "UT"), _single_rstrip),
        "UR": _ur,
        "AE": _ae,
        "PN": _pn,
        "IS": _is,
        "DS": _ds,
    }
)


def _encodings(element_json: dict[str, Any] | None) -> list[str]:
    if not element_json or "Value" not in element_json:
        return _DEFAULT_CHARSET
    names = [str(v) if v is not None else "" for v in element_json["Value"]]
    return list(convert_encodings(names))


_VR_CACHE: dict[int, str | None] = {}


def _dictionary_vr(tag: int) -> str | None:
    try:
        return _VR_CACHE[tag]
    except KeyError:
        pass
    try:
        vr: str | None = str(dictionary_VR(tag))
    except KeyError:
        vr = None
    if len(_VR_CACHE) < 65536:
        _VR_CACHE[tag] = vr
    return vr


def _read_meta(buf: bytes, pos: int) -> tuple[dict[str, Any], int]:
    """Parse group 0002 (always Explicit VR Little Endian, PS3.10 7.1)."""
    walker = _Walker(buf, implicit=False, little=True, bulk_threshold=1 << 30, max_depth=2, base=None)
    out: dict[str, Any] = {}
    end = len(buf)
    while pos + 8 <= end:
        group, _elem = struct.unpack_from("<HH", buf, pos)
        if group != 0x0002:
            break
        # parse exactly one element with the general walker, bounded to its own extent
        vr = bytes(buf[pos + 4 : pos + 6]).decode("latin-1")
        if vr in _LONG_VRS:
            length = struct.unpack_from("<L", buf, pos + 8)[0]
            value_end = pos + 12 + length
        else:
            length = struct.unpack_from("<H", buf, pos + 6)[0]
            value_end = pos + 8 + length
        if length == _UNDEFINED or value_end > end:
            raise InvalidInstance("the File Meta Information is truncated")
        element, _ = walker.walk(pos, value_end, 0, None)
        out.update(element)
        pos = value_end
    return out, pos


def _first(json: dict[str, Any], key: str) -> str:
    element = json.get(key)
    if not element or not element.get("Value"):
        return ""
    value = element["Value"][0]
    return "" if value is None else str(value)


def has_file_meta(data: bytes | memoryview) -> bool:
    """Whether the bytes start with a File Meta Information (with or without preamble)."""
    return (len(data) >= 132 and bytes(data[128:132]) == b"DICM") or bytes(data[:2]) == b"\x02\x00"


def looks_like_dicom(data: bytes | memoryview) -> bool:
    """Whether the bytes start like a Part 10 file or a bare data set."""
    if len(data) >= 132 and bytes(data[128:132]) == b"DICM":
        return True
    if len(data) >= 8:
        group, _ = struct.unpack_from("<HH", data, 0)
        return group in (0x0002, 0x0008)
    return False


def _guess_bare_encoding(data: bytes | memoryview) -> bool:
    """For a data set without File Meta: True if Implicit VR (PS3.5 A.1 vs A.2)."""
    vr = bytes(data[4:6])
    return not (vr.isalpha() and vr.isupper())


def parse_part10(
    data: bytes | memoryview,
    *,
    bulk_threshold: int = 1024,
    max_depth: int = 12,
    transfer_syntax_uid: str | None = None,
) -> ParsedInstance:
    """Vet a Part 10 stream (or a bare data set) and extract what ingest needs.

    ``transfer_syntax_uid`` names the encoding of a bare data set (no File Meta), as a
    C-STORE's presentation context does; without it a bare data set is taken as
    Implicit or Explicit VR Little Endian by inspection.
    Raises :class:`InvalidInstance` or :class:`InstanceTooLarge`.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    if len(data) >= 132 and data[128:132] == b"DICM":
        meta, pos = _read_meta(data, 132)
        has_meta = True
    elif len(data) >= 8 and struct.unpack_from("<H", data, 0)[0] == 0x0002:
        meta, pos = _read_meta(data, 0)
        has_meta = True
    else:
        meta, pos, has_meta = {}, 0, False
    if has_meta:
        ts = _first(meta, "00020010") or transfer_syntax_uid or ""
        if not ts:
            raise InvalidInstance("the File Meta Information has no Transfer Syntax UID")
    elif transfer_syntax_uid:
        ts = transfer_syntax_uid
    elif len(data) >= 8:
        ts = IMPLICIT_VR_LITTLE_ENDIAN if _guess_bare_encoding(data) else EXPLICIT_VR_LITTLE_ENDIAN
    else:
        raise InvalidInstance("the data is too short to be a DICOM data set")

    implicit = ts == IMPLICIT_VR_LITTLE_ENDIAN
    little = ts != EXPLICIT_VR_BIG_ENDIAN
    if little and ts != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN and len(data) >= pos + 8:
        # like pydicom, tolerate a data set whose VR encoding contradicts its transfer syntax
        implicit = _guess_bare_encoding(data[pos : pos + 8])
    buf: bytes = data
    base: int | None = 0
    start = pos
    if ts == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        try:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            buf = inflater.decompress(bytes(data[pos:]))
        except zlib.error as exc:
            raise InvalidInstance(f"the deflated data set cannot be inflated: {exc}") from exc
        start, base = 0, None
    walker = _Walker(
        buf,
        implicit=implicit,
        little=little,
        bulk_threshold=bulk_threshold,
        max_depth=max_depth,
        base=base,
    )
    if len(buf) - start < 8:
        raise InvalidInstance("the data set is empty or truncated")
    header, _ = walker.walk(start, len(buf), 0, None)
    sop_class = _first(header, "00080016")
    sop_instance = _first(header, "00080018")
    study = _first(header, "0020000D")
    series = _first(header, "0020000E")
    for name, value in (
        ("SOP Class UID", sop_class),
        ("SOP Instance UID", sop_instance),
        ("Study Instance UID", study),
        ("Series Instance UID", series),
    ):
        if not value:
            raise InvalidInstance(f"the data set has no {name}")
        if not is_valid_uid(value):
            raise InvalidInstance(f"the {name} {value!r} is not a valid UID")
    return ParsedInstance(
        transfer_syntax_uid=ts,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_instance_uid=study,
        series_instance_uid=series,
        header=header,
        meta=meta,
        dataset_offset=pos,
        has_meta=has_meta,
    )


def is_valid_uid(value: str) -> bool:
    """PS3.5 9.1: at most 64 characters, digits and dots, no empty or zero-led component."""
    if not value or len(value) > 64:
        return False
    for component in value.split("."):
        if not component or not component.isdigit() or not component.isascii():
            return False
        if len(component) > 1 and component[0] == "0":
            return False
    return True


def parse_dataset(data: bytes | memoryview, transfer_syntax_uid: str, *, max_depth: int = 12) -> dict[str, Any]:
    """A bare data set (a query identifier, say) as DICOM JSON, in the given transfer syntax."""
    if not isinstance(data, bytes):
        data = bytes(data)
    implicit = transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN
    little = transfer_syntax_uid != EXPLICIT_VR_BIG_ENDIAN
    if transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        try:
            data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)
        except zlib.error as exc:
            raise InvalidInstance(f"the deflated data set cannot be inflated: {exc}") from exc
    walker = _Walker(data, implicit=implicit, little=little, bulk_threshold=1 << 20, max_depth=max_depth, base=None)
    header, _ = walker.walk(0, len(data), 0, None)
    return header


def _meta_element(group_elem: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr == b"UI" else b" "
    tag = struct.pack("<HH", group_elem >> 16, group_elem & 0xFFFF)
    if vr == b"OB":
        return tag + vr + b"\x00\x00" + struct.pack("<L", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def encode_file_meta(
    transfer_syntax_uid: str,
    sop_class_uid: str,
    sop_instance_uid: str,
    source_ae_title: str,
    *,
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
    implementation_version: str = IMPLEMENTATION_VERSION,
) -> bytes:
    """Preamble, 'DICM' and the File Meta Information (PS3.10 7.1) for a received data set."""
    body = b"".join(
        (
            _meta_element(0x00020001, b"OB", b"\x00\x01"),
            _meta_element(0x00020002, b"UI", sop_class_uid.encode("ascii", "replace")[:64]),
            _meta_element(0x00020003, b"UI", sop_instance_uid.encode("ascii", "replace")[:64]),
            _meta_element(0x00020010, b"UI", transfer_syntax_uid.encode("ascii")),
            _meta_element(0x00020012, b"UI", implementation_class_uid.encode("ascii")),
            _meta_element(0x00020013, b"SH", implementation_version.encode("ascii")[:16]),
            _meta_element(0x00020016, b"AE", source_ae_title.strip().encode("ascii", "replace")[:16]),
        )
    )
    group_length = struct.pack("<HH", 0x0002, 0x0000) + b"UL" + struct.pack("<HL", 4, len(body))
    return b"\x00" * 128 + b"DICM" + group_length + body
