"""Lossy copies for routing: the derived instance a lossy rule sends.

Lossy compression changes the pixels, so the result is a new instance (PS3.3 C.7.6.1.1.5,
Lossy Image Compression): a new SOP Instance UID, Image Type DERIVED, Lossy Image
Compression "01" with its ratio and method, and a Source Image Sequence that points to
the original. It is made once per original, syntax and quality, stored in the archive
(hidden: clinical users keep seeing the original), remembered in ``derived_instance``, and
that same instance is sent on every attempt and by every job that asks for it.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from openpacs.domain import transfer_syntaxes as tsx
from openpacs.domain.errors import CannotDerive, InvalidQuery, NoPixelData
from openpacs.domain.qa import DERIVED_TRANSPORT, LOSSY_COPY_MARK
from openpacs.domain.records import Actor, ActorType, Origin, StoredInstance
from openpacs.domain.tags import Level
from openpacs.ports.index import Index
from openpacs.services.ingest import IngestService
from openpacs.services.outbound import OutboundService

log = logging.getLogger(__name__)

LOSSY_SYNTAXES = {
    tsx.JPEG_LS_NEAR_LOSSLESS: "ISO_14495_1",
    tsx.JPEG_2000: "ISO_15444_1",
}


def check_lossy(syntax: str, quality: int) -> None:
    """Refuse a lossy rule we could not carry out."""
    if syntax not in LOSSY_SYNTAXES:
        raise InvalidQuery(
            f"lossy compression is to JPEG-LS near-lossless ({tsx.JPEG_LS_NEAR_LOSSLESS}) or"
            f" JPEG 2000 ({tsx.JPEG_2000}), not {syntax!r}"
        )
    if syntax == tsx.JPEG_LS_NEAR_LOSSLESS and not 1 <= quality <= 255:
        raise InvalidQuery("for JPEG-LS near-lossless the quality is the NEAR value, 1 to 255 (2 is usual)")
    if syntax == tsx.JPEG_2000 and not 2 <= quality <= 200:
        raise InvalidQuery("for JPEG 2000 the quality is the compression ratio, 2 to 200 (10 is usual)")


class DerivationService:
    """Makes (once) and finds the lossy copies lossy rules send; thread-safe."""

    def __init__(
        self, index: Index, outbound: OutboundService, ingest: IngestService, *, clock: Callable[[], datetime]
    ) -> None:
        self._index = index
        self._outbound = outbound
        self._ingest = ingest
        self._clock = clock
        self._lock = threading.Lock()

    def lossy(self, instance: StoredInstance, syntax: str, quality: int) -> StoredInstance:
        """The lossy copy of *instance*: the one made before, or a new one, stored and remembered."""
        key = f"{syntax}:{quality}"
        found = self._find(instance.sop_instance_uid, key)
        if found is not None:
            return found
        with self._lock:
            found = self._find(instance.sop_instance_uid, key)
            if found is not None:
                return found
            data, uid = self._make(instance, syntax, quality)
            origin = Origin(actor=Actor(ActorType.RULE, "lossy-copy"), transport=DERIVED_TRANSPORT, calling_ae="")
            self._ingest.store(data, origin)
            with self._index.session(write=True) as session:
                uid = session.derived.add_derived(instance.sop_instance_uid, key, uid, self._clock())
        made = self._find(instance.sop_instance_uid, key)
        if made is None:
            raise CannotDerive(f"the lossy copy {uid} of {instance.sop_instance_uid} was not stored")
        return made

    def find(self, instance: StoredInstance, syntax: str, quality: int) -> StoredInstance | None:
        """The lossy copy made before, if any."""
        return self._find(instance.sop_instance_uid, f"{syntax}:{quality}")

    def _find(self, source: str, key: str) -> StoredInstance | None:
        with self._index.session() as session:
            uid = session.derived.derived_of(source, key)
            if uid is None:
                return None
            stored = session.stored_instances(Level.IMAGE, [uid], hidden=True)
        return stored[0] if stored else None

    def _make(self, instance: StoredInstance, syntax: str, quality: int) -> tuple[bytes, str]:
        ds = self._outbound.dataset(instance)
        if "PixelData" not in ds:
            raise NoPixelData("no pixel data to compress")
        try:
            if ds.file_meta.TransferSyntaxUID.is_compressed:
                ds.decompress()
            before = len(ds.PixelData)
            source = Dataset()
            source.ReferencedSOPClassUID = ds.SOPClassUID
            source.ReferencedSOPInstanceUID = ds.SOPInstanceUID
            uid = str(generate_uid())
            ds.SOPInstanceUID = uid
            ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
            if syntax == tsx.JPEG_LS_NEAR_LOSSLESS:
                ds.compress(syntax, generate_instance_uid=False, jls_error=quality)
            else:
                ds.compress(syntax, generate_instance_uid=False, j2k_cr=[float(quality)])
        except Exception as exc:
            raise CannotDerive(f"cannot compress to {syntax}: {type(exc).__name__}: {exc}") from exc
        ratio = before / max(1, len(ds.PixelData))
        previous = ds.get("LossyImageCompression") == "01"
        ds.LossyImageCompression = "01"
        ratios = list(ds.get("LossyImageCompressionRatio") or []) if previous else []
        methods = list(ds.get("LossyImageCompressionMethod") or []) if previous else []
        ds.LossyImageCompressionRatio = [*ratios, f"{ratio:.2f}"]
        ds.LossyImageCompressionMethod = [*methods, LOSSY_SYNTAXES[syntax]]
        image_type = [str(v) for v in (ds.get("ImageType") or ["DERIVED", "SECONDARY"])]
        ds.ImageType = ["DERIVED", *image_type[1:]] if image_type else ["DERIVED", "SECONDARY"]
        ds.DerivationDescription = f"{LOSSY_COPY_MARK} ({syntax}, {quality})"
        ds.SourceImageSequence = [source]
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue(), uid
