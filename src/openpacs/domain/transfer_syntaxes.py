"""Transfer syntaxes (PS3.5 Section 10, PS3.6 Annex A) and what the archive can do with them.

Decoding uses pydicom's pixel data handlers with pylibjpeg (JPEG, JPEG-LS, JPEG 2000,
RLE) installed; encoding covers RLE Lossless (pydicom), JPEG-LS Lossless (pyjpegls)
and JPEG 2000 Lossless (pylibjpeg-openjpeg). The archive never converts to a lossy
syntax under the original SOP Instance UID.
"""

from __future__ import annotations

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"

UNCOMPRESSED: tuple[str, ...] = (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED_LE)

LOSSLESS_COMPRESSED: tuple[str, ...] = (
    JPEG_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_2000_LOSSLESS,
    RLE_LOSSLESS,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
)

LOSSY: tuple[str, ...] = (JPEG_BASELINE, JPEG_EXTENDED, JPEG_LS_NEAR_LOSSLESS, JPEG_2000, HTJ2K)

#: Every transfer syntax the C-STORE SCP accepts, preferred first (PS3.5 10).
ACCEPTED: tuple[str, ...] = UNCOMPRESSED + LOSSLESS_COMPRESSED + LOSSY

#: Compressed syntaxes whose pixel data the archive can decode (to send uncompressed).
DECODABLE: frozenset[str] = frozenset(
    {
        JPEG_BASELINE,
        JPEG_EXTENDED,
        JPEG_LOSSLESS,
        JPEG_LOSSLESS_SV1,
        JPEG_LS_LOSSLESS,
        JPEG_LS_NEAR_LOSSLESS,
        JPEG_2000_LOSSLESS,
        JPEG_2000,
        RLE_LOSSLESS,
        HTJ2K_LOSSLESS,
        HTJ2K_LOSSLESS_RPCL,
        HTJ2K,
    }
)

#: Lossless syntaxes the archive can encode to, from uncompressed pixel data.
ENCODABLE: frozenset[str] = frozenset({RLE_LOSSLESS, JPEG_LS_LOSSLESS, JPEG_2000_LOSSLESS})


def is_uncompressed(uid: str) -> bool:
    """Native (not encapsulated) pixel data."""
    return uid in UNCOMPRESSED


def choose(stored: str, accepted: tuple[str, ...] | list[str]) -> str | None:
    """The syntax to send an instance stored as *stored* to a peer accepting *accepted*.

    The stored syntax when accepted (no conversion); else an uncompressed one when the
    pixel data can be decoded; else a lossless one we can encode. None when nothing fits.
    """
    if stored in accepted:
        return stored
    can_decode = is_uncompressed(stored) or stored in DECODABLE
    if not can_decode:
        return None
    for candidate in (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED_LE):
        if candidate in accepted:
            return candidate
    if stored in LOSSY:
        return None  # re-encoding lossy pixels losslessly would hide a lossy history: refuse
    for candidate in accepted:
        if candidate in ENCODABLE:
            return candidate
    return None
