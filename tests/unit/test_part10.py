"""The Part 10 vetting parser: its JSON equals pydicom's, and bad input is refused."""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from openpacs.domain.errors import InstanceTooLarge, InvalidInstance
from openpacs.domain.part10 import encode_file_meta, is_valid_uid, parse_dataset, parse_part10
from samples import pydicom_files, sample_file, shared_files


def _normalized(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("BULK" if k == "BulkDataURI" else _normalized(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def _reference(data: bytes) -> tuple[dict[str, Any], set[str]] | None:
    """pydicom's JSON of a file, and the tags whose values pydicom cannot convert (left out)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        except Exception:
            return None
        try:
            return ds.to_json_dict(1024, lambda _e: "BULK"), set()
        except Exception:
            full = ds.to_json_dict(1024, lambda _e: "BULK", suppress_invalid_tags=True)
        unconvertible = set()
        for element in ds:
            tag = f"{int(element.tag):08X}"
            if tag not in full:
                unconvertible.add(tag)
        return full, unconvertible


def _files() -> list[Path]:
    return pydicom_files() + shared_files()


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_header_json_equals_pydicom(path: Path) -> None:
    """For every sample pydicom reads, our DICOM JSON is pydicom's (bulk data by reference)."""
    data = path.read_bytes()
    reference = _reference(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = parse_part10(data, bulk_threshold=768, max_depth=30)
    except InvalidInstance as exc:
        # refused for ingest (no UIDs, bad UIDs, truncated): the reason must say so
        assert any(w in exc.reason for w in ("UID", "truncated", "malformed", "no ")), exc.reason
        return
    assert reference is not None, "pydicom cannot read a file we accept"
    expected, unconvertible = reference
    ours = _normalized(parsed.header)
    for tag in unconvertible:
        # what pydicom cannot convert (badVR.dcm's IS "1A" and a sequence holding an
        # invalid UID) is kept: IS "1A" as its bytes (UN), the sequence as it came
        kept = ours.pop(tag)
        assert kept["vr"] in ("UN", "SQ") and len(kept) > 1, kept
    assert ours == expected


def test_every_transfer_syntax_folder_of_the_shared_corpus_parses(shared_data: Path) -> None:
    """../shared's pylibjpeg-data: one file per transfer syntax folder at least is vetted and indexed."""
    folders = sorted(p for p in (shared_data / "dicom" / "pylibjpeg-data").iterdir() if p.is_dir())
    assert len(folders) >= 10
    for folder in folders:
        parsed = []
        for path in sorted(folder.glob("*.dcm")):
            try:
                parsed.append(parse_part10(path.read_bytes()))
            except InvalidInstance:
                continue
        assert parsed, f"no file of {folder.name} could be parsed"
        assert all(p.header.get("7FE00010") for p in parsed)


def test_bulk_data_uri_addresses_the_value_in_the_file() -> None:
    data = sample_file("CT_small.dcm").read_bytes()
    parsed = parse_part10(data)
    uri = parsed.header["7FE00010"]["BulkDataURI"]
    first, last = (int(x) for x in uri.removeprefix("bytes=").split("-"))
    assert data[first : last + 1] == pydicom.dcmread(io.BytesIO(data)).PixelData


def test_uids_and_transfer_syntax_are_extracted() -> None:
    parsed = parse_part10(sample_file("MR_small_bigendian.dcm").read_bytes())
    ds = pydicom.dcmread(sample_file("MR_small_bigendian.dcm"))
    assert parsed.transfer_syntax_uid == "1.2.840.10008.1.2.2"
    assert parsed.sop_instance_uid == ds.SOPInstanceUID
    assert parsed.series_instance_uid == ds.SeriesInstanceUID


@pytest.mark.parametrize("cut", [140, 400, 1000, -100, -1])
def test_truncated_stream_is_refused(cut: int) -> None:
    data = sample_file("CT_small.dcm").read_bytes()
    with pytest.raises(InvalidInstance):
        parse_part10(data[:cut])


def _with_nesting(depth: int) -> bytes:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    item = Dataset()
    item.CodeValue = "1"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([item])
        item = outer
    ds.ContentSequence = item.ContentSequence
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_absurd_nesting_is_refused() -> None:
    parse_part10(_with_nesting(5), max_depth=12)
    with pytest.raises(InstanceTooLarge):
        parse_part10(_with_nesting(40), max_depth=12)


def test_missing_or_malformed_uids_are_refused() -> None:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    del ds.SeriesInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with pytest.raises(InvalidInstance, match="Series Instance UID"):
        parse_part10(buffer.getvalue())
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.SOPInstanceUID = "1.2.03.abc"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with pytest.raises(InvalidInstance, match="not a valid UID"):
        parse_part10(buffer.getvalue())


def test_garbage_is_refused() -> None:
    with pytest.raises(InvalidInstance):
        parse_part10(b"\x00" * 128 + b"DICM" + b"\xff" * 300)
    with pytest.raises(InvalidInstance):
        parse_part10(b"PK\x03\x04 not a dicom file at all")


def test_element_length_beyond_the_end_is_refused() -> None:
    data = bytearray(sample_file("CT_small.dcm").read_bytes())
    # make the length of Patient's Name (explicit VR, 2-byte length) huge
    index = data.find(b"\x10\x00\x10\x00PN")
    struct.pack_into("<H", data, index + 6, 0xFFF0)
    with pytest.raises(InvalidInstance, match="truncated|malformed"):
        parse_part10(bytes(data))


@pytest.mark.parametrize(
    ("uid", "valid"),
    [
        ("1.2.840.10008.1.2", True),
        ("1.2.840.10008.1.2.", False),
        ("1.02.3", False),
        ("1.2.a", False),
        ("1." + "2" * 63, False),
        ("0", True),
        ("", False),
    ],
)
def test_uid_validity(uid: str, valid: bool) -> None:
    assert is_valid_uid(uid) is valid


def test_file_meta_is_read_back_by_pydicom() -> None:
    meta = encode_file_meta("1.2.840.10008.1.2.1", "1.2.3", "1.2.3.4", "MODALITY1")
    dataset = sample_file("CT_small.dcm").read_bytes()
    parsed = parse_part10(dataset)
    bare = dataset[parsed.dataset_offset :]
    ds = pydicom.dcmread(io.BytesIO(meta + bare))
    assert ds.file_meta.SourceApplicationEntityTitle == "MODALITY1"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.PatientName == "CompressedSamples^CT1"


def test_bare_identifier_in_implicit_vr() -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "Müller^Jürgen"
    ds.SpecificCharacterSet = "ISO_IR 100"
    buffer = pydicom.filebase.DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    ds.set_original_encoding(True, True, "ISO_IR 100")
    pydicom.filewriter.write_dataset(buffer, ds)
    parsed = parse_dataset(buffer.getvalue(), "1.2.840.10008.1.2")
    assert parsed["00100010"]["Value"][0]["Alphabetic"] == "Müller^Jürgen"
