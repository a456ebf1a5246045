"""The one outbound pipeline: coercion with the index's attribute sets, then transcoding.

Every path that lets an object leave (C-MOVE, C-GET, and later WADO-RS, forwarding,
export) takes its bytes from :meth:`OutboundService.encode`. When the patient, study
and series sets agree with the stored header and the peer accepts the stored transfer
syntax, it is a no-op: the stored data set is sent byte for byte. Otherwise the object
is decoded, the sets applied, the replaced values recorded in Original Attributes
Sequence (0400,0561) (PS3.3 C.12.1.1.9), and it is encoded in a syntax the peer
accepts: losslessly, never lossy under the original SOP Instance UID.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import UID

from openpacs.domain import dicom_json as dj
from openpacs.domain import transfer_syntaxes as tsx
from openpacs.domain.errors import NotFound, OpenPacsError
from openpacs.domain.part10 import encode_file_meta
from openpacs.domain.records import StoredInstance
from openpacs.ports.blobstore import BlobStore
from openpacs.ports.peers import OutgoingInstance

_CONTENT_SEQUENCE = 0x0040A730


class CannotEncode(OpenPacsError):
    """No transfer syntax the peer accepts can carry this instance without loss."""

    dimse_status = 0xA702
    http_status = 406


def coercion_changes(instance: StoredInstance) -> dict[str, dict[str, Any]]:
    """Attributes whose index value differs from the stored header (key -> index element)."""
    changes: dict[str, dict[str, Any]] = {}
    known = instance.level_values or {}
    for attrs in (instance.patient_attrs, instance.study_attrs, instance.series_attrs):
        for key, element in attrs.items():
            # the recorded level elements answer without parsing the header; a key they lack
            # (absent from the object, or not a level key when they were recorded) is looked up
            current = known[key] if key in known else instance.header.get(key)
            if not dj.element_equal(element, current):
                changes[key] = element
    # the instance's own set holds only values that differ from its header
    changes.update(instance.instance_attrs)
    return changes


def dataset_offset(data: bytes) -> int:
    """Where the data set starts in a Part 10 stream (after the File Meta Information)."""
    pos = 132 if data[128:132] == b"DICM" else 0
    group, elem = struct.unpack_from("<HH", data, pos)
    if (group, elem) == (0x0002, 0x0000):
        (length,) = struct.unpack_from("<L", data, pos + 8)
        return pos + 12 + int(length)
    while pos + 8 <= len(data):
        group, _ = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            return pos
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            (length,) = struct.unpack_from("<L", data, pos + 8)
            pos += 12 + int(length)
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8 + int(length)
    return pos


class OutboundService:
    """Produces the bytes of an instance for a peer; thread-safe."""

    def __init__(self, blobs: BlobStore, *, ae_title: str, clock: Callable[[], datetime]) -> None:
        self._blobs = blobs
        self._ae_title = ae_title
        self._clock = clock

    def read(self, instance: StoredInstance) -> bytes:
        """The stored Part 10 bytes."""
        return self._blobs.read(instance.blob.key)

    def encode(self, instance: StoredInstance, accepted: tuple[str, ...]) -> tuple[str, bytes | memoryview]:
        """(transfer syntax, data set bytes without File Meta) for a peer accepting *accepted*."""
        target = tsx.choose(instance.transfer_syntax_uid, accepted)
        if target is None:
            raise CannotEncode(
                f"the peer accepts none of the syntaxes {instance.transfer_syntax_uid} can be sent in without loss"
            )
        data = self.read(instance)
        changes = coercion_changes(instance)
        if not changes and target == instance.transfer_syntax_uid:
            return target, memoryview(data)[dataset_offset(data) :]
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if changes:
            self._coerce(ds, changes)
        return target, self._encode(ds, instance.transfer_syntax_uid, target)

    def outgoing(self, instance: StoredInstance) -> OutgoingInstance:
        """The port's view of an instance to send."""
        return OutgoingInstance(
            sop_class_uid=instance.sop_class_uid,
            sop_instance_uid=instance.sop_instance_uid,
            transfer_syntax_uid=instance.transfer_syntax_uid,
            data=lambda accepted: self.encode(instance, accepted),
        )

    def dataset(self, instance: StoredInstance) -> Dataset:
        """The coerced instance as a pydicom Dataset (in its stored transfer syntax)."""
        ds = pydicom.dcmread(io.BytesIO(self.read(instance)), force=True)
        changes = coercion_changes(instance)
        if changes:
            self._coerce(ds, changes)
        return ds

    def _coerce(self, ds: Dataset, changes: dict[str, dict[str, Any]]) -> None:
        """Apply the sets and keep the replaced values (PS3.3 C.12.1.1.9.2)."""
        replacements = dj.to_dataset(changes)
        modified = Dataset()
        for element in replacements:
            if element.tag == _CONTENT_SEQUENCE:
                # an SR content tree with rewritten references: its previous version is not copied
                # into Modified Attributes Sequence, where readers (dciodvfy) take it for content of
                # the document whose references the evidence no longer lists; the evidence
                # sequence's previous value (every old reference) is kept
                ds[element.tag] = element
                continue
            if element.tag in ds:
                modified.add(ds[element.tag])
            else:
                modified.add_new(element.tag, element.VR, None)
            ds[element.tag] = element
        item = Dataset()
        item.ModifiedAttributesSequence = Sequence([modified])
        item.AttributeModificationDateTime = self._clock().strftime("%Y%m%d%H%M%S")
        item.ModifyingSystem = self._ae_title
        item.SourceOfPreviousValues = ""
        item.ReasonForTheAttributeModification = "COERCE"
        existing = ds.get("OriginalAttributesSequence")
        items = list(existing.value) if existing is not None else []
        items.append(item)
        ds.OriginalAttributesSequence = Sequence(items)

    @staticmethod
    def _encode(ds: Dataset, stored: str, target: str) -> bytes:
        if stored != target and not tsx.is_uncompressed(stored):
            ds.decompress(generate_instance_uid=False)
            stored = tsx.EXPLICIT_LE
        if (stored == tsx.EXPLICIT_BE) != (target == tsx.EXPLICIT_BE):
            _swap_binary_values(ds)
        if stored != target and not tsx.is_uncompressed(target):
            ds.compress(UID(target), generate_instance_uid=False)
        if not hasattr(ds, "file_meta"):
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = UID(target)
        buffer = io.BytesIO()
        dcmwrite(
            buffer,
            ds,
            implicit_vr=target == tsx.IMPLICIT_LE,
            little_endian=target != tsx.EXPLICIT_BE,
            enforce_file_format=False,
            force_encoding=True,
        )
        return _strip_meta(buffer.getvalue())


_WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _swap_binary_values(ds: Dataset) -> None:
    """Swap the byte order of binary values for a little <-> big endian conversion (PS3.5 7.3).

    pydicom re-encodes numbers, but keeps OW/OF/OL/OD/OV values as raw bytes.
    """
    import numpy as np

    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                _swap_binary_values(item)
            continue
        size = _WORD_SIZES.get(str(element.VR))
        if element.tag == 0x7FE00010 and int(ds.get("BitsAllocated", 16)) in (32, 64):
            size = int(ds.BitsAllocated) // 8
        if size and element.value and len(element.value) % size == 0:
            dtype = np.dtype(f"u{size}")
            element.value = np.frombuffer(element.value, dtype=dtype).byteswap().tobytes()


def _strip_meta(data: bytes) -> bytes:
    if len(data) >= 132 and data[128:132] == b"DICM":
        return data[dataset_offset(data) :]
    if data[:2] == b"\x02\x00":
        return data[dataset_offset(data) :]
    return data


def coerced_header(instance: StoredInstance) -> dict[str, Any]:
    """The instance's DICOM JSON as it leaves the archive: its header with the index's sets over it."""
    merged = dict(instance.header)
    for attrs in (instance.patient_attrs, instance.study_attrs, instance.series_attrs, instance.instance_attrs):
        merged.update(attrs)
    return merged


def bulk_range(element: dict[str, Any]) -> tuple[int, int] | None:
    """The (first, last) byte range of a bulk value kept in the stored file."""
    uri = str(element.get("BulkDataURI", ""))
    if not uri.startswith("bytes="):
        return None
    first, _, last = uri[6:].partition("-")
    return int(first), int(last)


class PartService:
    """Whole objects, frames and bulk values for the web doors (PS3.18 WADO-RS)."""

    def __init__(self, outbound: OutboundService, blobs: BlobStore) -> None:
        self._outbound = outbound
        self._blobs = blobs

    def part10(self, instance: StoredInstance, accepted: tuple[str, ...]) -> tuple[str, Iterator[bytes | memoryview]]:
        """(transfer syntax, chunks of a Part 10 file): the stored file streamed as is when nothing
        changes, else coerced and transcoded with a File Meta Information of its own."""
        target = tsx.choose(instance.transfer_syntax_uid, accepted)
        if target is None:
            raise CannotEncode(f"{instance.transfer_syntax_uid} cannot be sent as {', '.join(accepted)} without loss")
        if self.stored_size(instance, accepted) is not None:
            return target, self._chunks(instance.blob.key)
        syntax, data = self._outbound.encode(instance, (target,))
        meta = encode_file_meta(syntax, instance.sop_class_uid, instance.sop_instance_uid, "")
        return syntax, iter((meta, bytes(data)))

    def stored_size(self, instance: StoredInstance, accepted: tuple[str, ...]) -> int | None:
        """The size of what ``part10`` gives when that is the stored file as it is, else None."""
        target = tsx.choose(instance.transfer_syntax_uid, accepted)
        if target == instance.transfer_syntax_uid and not coercion_changes(instance):
            return instance.blob.size
        return None

    def _chunks(self, key: str) -> Iterator[bytes | memoryview]:
        # one mapped view of the whole file: sent from the page cache without a copy here
        yield self._blobs.view(key)

    def bulk(self, instance: StoredInstance, first: int, last: int) -> bytes:
        """Bytes *first* to *last* of the stored file (a BulkDataURI range)."""
        if first < 0 or last < first or last >= instance.blob.size:
            raise NotFound("no such bulk data range in this instance")
        return self._blobs.read_range(instance.blob.key, first, last)

    def frames(self, instance: StoredInstance, numbers: list[int], compressed: bool) -> tuple[str, list[bytes]]:
        """Frames (1-based) as uncompressed little endian pixels, or in the stored compressed syntax."""
        stored = instance.transfer_syntax_uid
        header = instance.header
        pixel = header.get("7FE00010") or {}
        count = int(dj.first(header, "00280008") or 1)
        for n in numbers:
            if n < 1 or n > count:
                raise NotFound(f"frame {n} does not exist (the instance has {count})")
        if not pixel:
            raise NotFound("the instance has no pixel data")
        if compressed and not tsx.is_uncompressed(stored):
            ds = self._outbound.dataset(instance)
            from pydicom.encaps import generate_frames

            all_frames = list(generate_frames(ds.PixelData, number_of_frames=count))
            return stored, [all_frames[n - 1] for n in numbers]
        span = bulk_range(pixel)
        if tsx.is_uncompressed(stored) and stored not in (tsx.EXPLICIT_BE, tsx.DEFLATED_LE) and span:
            rows, columns = int(dj.first(header, "00280010")), int(dj.first(header, "00280011"))
            samples, bits = int(dj.first(header, "00280002") or 1), int(dj.first(header, "00280100"))
            frame_size = rows * columns * samples * bits // 8
            first = span[0]
            return tsx.EXPLICIT_LE, [
                self._blobs.read_range(instance.blob.key, first + (n - 1) * frame_size, first + n * frame_size - 1)
                for n in numbers
            ]
        ds = self._outbound.dataset(instance)
        array = ds.pixel_array
        frames = [array] if count == 1 else [array[n - 1] for n in numbers]
        return tsx.EXPLICIT_LE, [f.astype(f.dtype.newbyteorder("<")).tobytes() for f in frames]
