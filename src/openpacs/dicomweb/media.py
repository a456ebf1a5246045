"""Media types of DICOMweb (PS3.18 8.7): reading Accept headers, writing multipart/related."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from openpacs.domain import transfer_syntaxes as tsx
from openpacs.domain.errors import OpenPacsError

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"
MULTIPART = "multipart/related"


class NotAcceptable(OpenPacsError):
    """None of the media types or transfer syntaxes the client accepts can be produced (HTTP 406)."""

    dimse_status = 0xC000
    http_status = 406


class UnsupportedMediaType(OpenPacsError):
    """The request body is not of a media type this resource takes (HTTP 415)."""

    dimse_status = 0xC000
    http_status = 415


@dataclass(frozen=True)
class MediaRange:
    """One media range of an Accept header."""

    type: str
    params: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0


def _split(header: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        if ch == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_media_range(text: str) -> MediaRange:
    """'multipart/related; type="application/dicom"; transfer-syntax=*' as a MediaRange."""
    pieces = _split(text, ";")
    params: dict[str, str] = {}
    quality = 1.0
    for piece in pieces[1:]:
        name, _, value = piece.partition("=")
        name, value = name.strip().lower(), value.strip().strip('"')
        if name == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
        else:
            params[name] = value
    return MediaRange(pieces[0].lower() if pieces else "*/*", params, quality)


def accepted(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, best first (no header: anything)."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = [parse_media_range(p) for p in _split(header, ",")]
    return sorted((r for r in ranges if r.quality > 0), key=lambda r: -r.quality)


def dicom_syntaxes(header: str | None) -> tuple[str, ...]:
    """Transfer syntaxes a WADO-RS retrieve may use (PS3.18 8.7.3.5.2).

    No ``transfer-syntax`` parameter means Explicit VR Little Endian; ``*`` means any,
    and the archive sends what it stores.
    """
    for media in accepted(header):
        is_dicom = media.type == DICOM or (media.type == MULTIPART and media.params.get("type", DICOM) == DICOM)
        if media.type in ("*/*", "multipart/*") or is_dicom:
            syntax = media.params.get("transfer-syntax", tsx.EXPLICIT_LE)
            return ("*",) if syntax == "*" else (syntax,)
    raise NotAcceptable(f'this resource is served as {MULTIPART}; type="{DICOM}"')


def wants(header: str | None, *types: str) -> str:
    """The first of *types* the Accept header admits (raises NotAcceptable)."""
    for media in accepted(header):
        for candidate in types:
            if media.type in ("*/*", candidate) or media.type == candidate.split("/")[0] + "/*":
                return candidate
            if media.type == MULTIPART and media.params.get("type", "") == candidate:
                return candidate
    raise NotAcceptable(f"this resource is served as {' or '.join(types)}")


class Multipart:
    """A multipart/related body written part by part (RFC 2387)."""

    def __init__(self, part_type: str) -> None:
        self.boundary = secrets.token_hex(16)
        self.part_type = part_type

    @property
    def content_type(self) -> str:
        """The Content-Type header of the whole body."""
        return f'{MULTIPART}; type="{self.part_type}"; boundary={self.boundary}'

    def part(
        self, chunks: Iterable[bytes | memoryview], content_type: str, location: str = ""
    ) -> Iterator[bytes | memoryview]:
        """One part: its headers, then its chunks."""
        headers = f"--{self.boundary}\r\nContent-Type: {content_type}\r\n"
        if location:
            headers += f"Content-Location: {location}\r\n"
        yield (headers + "\r\n").encode()
        yield from chunks
        yield b"\r\n"

    def part_length(self, size: int, content_type: str, location: str = "") -> int:
        """The bytes ``part`` writes for a body of *size* bytes."""
        head = f"--{self.boundary}\r\nContent-Type: {content_type}\r\n"
        if location:
            head += f"Content-Location: {location}\r\n"
        return len((head + "\r\n").encode()) + size + 2

    def end(self) -> bytes:
        """The closing delimiter."""
        return f"--{self.boundary}--\r\n".encode()
