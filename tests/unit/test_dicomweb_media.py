"""PS3.18 facts about media types and transfer syntaxes, table-driven: which syntax a WADO-RS
Accept header asks for (8.7.3.5.2), which syntax frames go out in (Table 8.7.4-1), and the
viewer's adjustments of OHIF's files."""

from __future__ import annotations

import pytest

from openpacs.dicomweb.media import NotAcceptable, accepted, dicom_syntaxes, parse_media_range, wants
from openpacs.dicomweb.wado import dicom_syntaxes_for_frames
from openpacs.domain import transfer_syntaxes as tsx
from openpacs.web.pages import safe_next
from openpacs.web.viewer import rewrite_index

MULTIPART_DICOM = 'multipart/related; type="application/dicom"'


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, (tsx.EXPLICIT_LE,)),  # no Accept: the default, Explicit VR Little Endian
        ("*/*", (tsx.EXPLICIT_LE,)),
        (MULTIPART_DICOM, (tsx.EXPLICIT_LE,)),  # no transfer-syntax parameter: Explicit VR LE
        (f"{MULTIPART_DICOM}; transfer-syntax=*", ("*",)),  # as stored
        (f"{MULTIPART_DICOM}; transfer-syntax={tsx.RLE_LOSSLESS}", (tsx.RLE_LOSSLESS,)),
        (f'multipart/related; type=application/dicom; transfer-syntax="{tsx.JPEG_2000}"', (tsx.JPEG_2000,)),
        ("application/dicom", (tsx.EXPLICIT_LE,)),
        (f"application/json;q=0.9, {MULTIPART_DICOM}; transfer-syntax=*", ("*",)),
        ("multipart/*", (tsx.EXPLICIT_LE,)),
    ],
)
def test_wado_rs_transfer_syntax_from_accept(accept: str | None, expected: tuple[str, ...]) -> None:
    assert dicom_syntaxes(accept) == expected


@pytest.mark.parametrize("accept", ["application/dicom+json", "image/jpeg", "text/html", f"{MULTIPART_DICOM};q=0"])
def test_wado_rs_refuses_what_it_cannot_send(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        dicom_syntaxes(accept)


OCTETS = "multipart/related; type=application/octet-stream"


@pytest.mark.parametrize(
    ("accept", "stored", "expected"),
    [
        (None, tsx.EXPLICIT_LE, tsx.EXPLICIT_LE),
        (None, tsx.JPEG_2000_LOSSLESS, tsx.EXPLICIT_LE),  # decoded by default
        (OCTETS, tsx.JPEG_LS_LOSSLESS, tsx.EXPLICIT_LE),
        (f"{OCTETS}; transfer-syntax=*", tsx.JPEG_LS_LOSSLESS, tsx.JPEG_LS_LOSSLESS),  # what OHIF asks
        (f"{OCTETS}; transfer-syntax=*", tsx.EXPLICIT_LE, tsx.EXPLICIT_LE),
        (f"{OCTETS}; transfer-syntax=*", tsx.EXPLICIT_BE, tsx.EXPLICIT_LE),
        ("multipart/related; type=image/jp2", tsx.JPEG_2000, tsx.JPEG_2000),
        (
            f"multipart/related; type=image/jpeg; transfer-syntax={tsx.JPEG_BASELINE}",
            tsx.JPEG_BASELINE,
            tsx.JPEG_BASELINE,
        ),
        ("image/*", tsx.JPEG_LOSSLESS_SV1, tsx.JPEG_LOSSLESS_SV1),
    ],
)
def test_frames_syntax(accept: str | None, stored: str, expected: str) -> None:
    assert dicom_syntaxes_for_frames(accept, stored) == expected


@pytest.mark.parametrize(
    ("accept", "stored"),
    [
        ("multipart/related; type=image/jp2", tsx.JPEG_BASELINE),  # a different compression
        ("multipart/related; type=image/jpeg", tsx.EXPLICIT_LE),  # frames are not rendered
        (f"{OCTETS}; transfer-syntax={tsx.RLE_LOSSLESS}", tsx.EXPLICIT_LE),  # no re-encoding of frames
    ],
)
def test_frames_refused(accept: str, stored: str) -> None:
    with pytest.raises(NotAcceptable):
        dicom_syntaxes_for_frames(accept, stored)


def test_media_ranges_are_ordered_by_quality_and_quotes_keep_separators() -> None:
    ranges = accepted('image/png;q=0.5, image/jpeg, multipart/related; type="a,b"; q=0.7')
    assert [r.type for r in ranges] == ["image/jpeg", "multipart/related", "image/png"]
    assert ranges[1].params["type"] == "a,b"
    assert parse_media_range("Application/DICOM+JSON").type == "application/dicom+json"
    assert wants("image/*", "image/jpeg", "image/png") == "image/jpeg"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/viewer/viewer?StudyInstanceUIDs=1.2", "/viewer/viewer?StudyInstanceUIDs=1.2"),
        ("/api/docs", "/api/docs"),
        ("https://evil.example/", "/viewer/"),
        ("//evil.example/", "/viewer/"),
        ("/\\evil.example", "/viewer/"),
        ("/viewer/\r\nSet-Cookie: x=y", "/viewer/"),
        (None, "/viewer/"),
        ("", "/viewer/"),
    ],
)
def test_login_redirects_stay_on_this_server(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_ohif_index_is_moved_under_viewer() -> None:
    original = (
        b'<script>console.time("scriptToView"),window.PUBLIC_URL="/"</script>'
        b'<link rel="manifest" href="/manifest.json"><meta name="msapplication-TileImage" content="/assets/t.png">'
        b'<script src="/app-config.js"></script><script defer src="/app.bundle.js"></script>'
        b'<a href="https://ohif.org/">x</a>'
    )
    rewritten = rewrite_index(original).decode()
    assert 'window.PUBLIC_URL="/viewer/"' in rewritten
    assert 'href="/viewer/manifest.json"' in rewritten
    assert 'content="/viewer/assets/t.png"' in rewritten
    assert 'src="/viewer/app-config.js"' in rewritten and 'src="/viewer/app.bundle.js"' in rewritten
    assert 'href="https://ohif.org/"' in rewritten  # absolute links stay
