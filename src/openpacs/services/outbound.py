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
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import UID

from openpacs.domain import dicom_json as dj
from openpacs.domain import transfer_syntaxes as tsx
from openpacs.domain.errors import OpenPacsError
from openpacs.domain.records import StoredInstance
from openpacs.ports.blobstore import BlobStore
from openpacs.ports.peers import OutgoingInstance


class CannotEncode(OpenPacsError):
    """No transfer syntax the peer accepts can carry this instance without loss."""

    dimse_status = 0xA702
    http_status = 406


def coercion_changes(instance: StoredInstance) -> dict[str, dict[str, Any]]:
    """Attributes whose index value differs from the stored header (key -> index element)."""
    changes: dict[str, dict[str, Any]] = {}
    header = instance.header
    for attrs in (instance.patient_attrs, instance.study_attrs, instance.series_attrs):
        for key, element in attrs.items():
            if not dj.element_equal(element, header.get(key)):
                changes[key] = element
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
        if not tsx.is_uncompressed(target):
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
