"""The DicomPeer port: our SCU side (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET) over
:mod:`openpacs.dimse.negotiation`.

A batch of instances goes over one association; the presentation contexts proposed
cover each SOP class with its stored transfer syntax and the uncompressed ones, so
that the peer can pick and the outbound pipeline transcode only when it must.
A C-GET proposes the storage SOP classes it can receive with the SCP role, each with
an uncompressed and a compressed context, so that instances arrive as they are stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydicom import uid

from openpacs.dimse import commands as cmd
from openpacs.dimse.association import Aborted, Association, Message, ReleaseRequested
from openpacs.dimse.identifiers import decode_identifier, encode_identifier
from openpacs.dimse.negotiation import (
    PATIENT_ROOT_FIND,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    VERIFICATION,
    Requestor,
)
from openpacs.dimse.pdu import ProtocolError
from openpacs.domain import transfer_syntaxes as tsx
from openpacs.domain.errors import OpenPacsError, PeerError
from openpacs.domain.part10 import encode_file_meta
from openpacs.ports.peers import OutgoingInstance, PeerAddress, SendResult

log = logging.getLogger("openpacs.dimse")
_MAX_CONTEXTS = 128
_UNCOMPRESSED = (tsx.EXPLICIT_LE, tsx.IMPLICIT_LE)
#: What a C-GET's second context per storage SOP class offers: every compressed syntax
#: the archive stores as received, the commonest first (an acceptor that takes the
#: requestor's order accepts only the first it supports), lossless before lossy.
_COMPRESSED = (
    tsx.JPEG_LOSSLESS_SV1,
    tsx.JPEG_2000_LOSSLESS,
    tsx.JPEG_LS_LOSSLESS,
    tsx.RLE_LOSSLESS,
    tsx.JPEG_LOSSLESS,
    tsx.HTJ2K_LOSSLESS,
    tsx.HTJ2K_LOSSLESS_RPCL,
    tsx.JPEG_BASELINE,
    tsx.JPEG_2000,
    tsx.JPEG_EXTENDED,
    tsx.JPEG_LS_NEAR_LOSSLESS,
    tsx.HTJ2K,
)
_RETRIEVE_KEYS = {"STUDY": "0020000D", "SERIES": "0020000E", "IMAGE": "00080018"}

#: The storage SOP classes a C-GET offers by default (PS3.4 B.5): two contexts each plus
#: the Query/Retrieve one must stay within the 128 presentation contexts of PS3.8 9.3.2.2.
STORAGE_SOP_CLASSES: tuple[str, ...] = (
    uid.ComputedRadiographyImageStorage,
    uid.DigitalXRayImageStorageForPresentation,
    uid.DigitalXRayImageStorageForProcessing,
    uid.DigitalMammographyXRayImageStorageForPresentation,
    uid.DigitalMammographyXRayImageStorageForProcessing,
    uid.DigitalIntraOralXRayImageStorageForPresentation,
    uid.BreastTomosynthesisImageStorage,
    uid.CTImageStorage,
    uid.EnhancedCTImageStorage,
    uid.LegacyConvertedEnhancedCTImageStorage,
    uid.MRImageStorage,
    uid.EnhancedMRImageStorage,
    uid.EnhancedMRColorImageStorage,
    uid.MRSpectroscopyStorage,
    uid.UltrasoundImageStorage,
    uid.UltrasoundMultiFrameImageStorage,
    uid.EnhancedUSVolumeStorage,
    uid.SecondaryCaptureImageStorage,
    uid.MultiFrameSingleBitSecondaryCaptureImageStorage,
    uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    uid.MultiFrameTrueColorSecondaryCaptureImageStorage,
    uid.XRayAngiographicImageStorage,
    uid.EnhancedXAImageStorage,
    uid.XRayRadiofluoroscopicImageStorage,
    uid.EnhancedXRFImageStorage,
    uid.XRay3DAngiographicImageStorage,
    uid.NuclearMedicineImageStorage,
    uid.PositronEmissionTomographyImageStorage,
    uid.EnhancedPETImageStorage,
    uid.LegacyConvertedEnhancedPETImageStorage,
    uid.RTImageStorage,
    uid.RTDoseStorage,
    uid.RTStructureSetStorage,
    uid.RTPlanStorage,
    uid.RTIonPlanStorage,
    uid.RTBeamsTreatmentRecordStorage,
    uid.VLEndoscopicImageStorage,
    uid.VLMicroscopicImageStorage,
    uid.VLPhotographicImageStorage,
    uid.VideoEndoscopicImageStorage,
    uid.OphthalmicPhotography8BitImageStorage,
    uid.OphthalmicTomographyImageStorage,
    uid.VLWholeSlideMicroscopyImageStorage,
    uid.BasicTextSRStorage,
    uid.EnhancedSRStorage,
    uid.ComprehensiveSRStorage,
    uid.Comprehensive3DSRStorage,
    uid.XRayRadiationDoseSRStorage,
    uid.MammographyCADSRStorage,
    uid.KeyObjectSelectionDocumentStorage,
    uid.GrayscaleSoftcopyPresentationStateStorage,
    uid.ColorSoftcopyPresentationStateStorage,
    uid.EncapsulatedPDFStorage,
    uid.EncapsulatedCDAStorage,
    uid.SegmentationStorage,
    uid.SpatialRegistrationStorage,
    uid.RawDataStorage,
    uid.TwelveLeadECGWaveformStorage,
)


class DimsePeer(Requestor):
    """Implements the DicomPeer port."""

    def echo(self, peer: PeerAddress, *, timeout: float = 10.0) -> None:
        """C-ECHO (PS3.4 Annex A)."""
        assoc = self._associate(peer, [(VERIFICATION, (tsx.EXPLICIT_LE, tsx.IMPLICIT_LE))], timeout)
        try:
            if not assoc.contexts:
                raise PeerError(f"{peer} accepted the association but not the Verification SOP Class")
            context = next(iter(assoc.contexts.values()))
            assoc.send(context.id, {"CommandField": cmd.C_ECHO_RQ, "MessageID": 1, "AffectedSOPClassUID": VERIFICATION})
            try:
                reply = assoc.receive()
            except TimeoutError as exc:
                raise PeerError(f"{peer} did not answer the C-ECHO within {timeout:g} s") from exc
            except (Aborted, ReleaseRequested, ProtocolError) as exc:
                raise PeerError(f"{peer} aborted the association during the C-ECHO") from exc
            status = int(reply.command.get("Status", 0xC000))
            if status != 0:
                raise PeerError(f"{peer} answered the C-ECHO with status 0x{status:04X}")
        except PeerError:
            assoc.abort()
            raise
        assoc.release(timeout)

    def find(self, peer: PeerAddress, level: str, keys: dict[str, Any], *, limit: int = 10_000) -> list[dict[str, Any]]:
        """C-FIND as SCU (PS3.4 C.4.1) in the Study Root model (Patient Root at PATIENT level):
        the answers as DICOM JSON. A failure status raises PeerError."""
        model = PATIENT_ROOT_FIND if level == "PATIENT" else STUDY_ROOT_FIND
        assoc = self._associate(peer, [(model, (tsx.EXPLICIT_LE, tsx.IMPLICIT_LE))], self.timeout)
        answers: list[dict[str, Any]] = []
        try:
            context = self._context(assoc, peer, model, "C-FIND")
            identifier = {"00080052": {"vr": "CS", "Value": [level]}, **keys}
            command = {"CommandField": cmd.C_FIND_RQ, "MessageID": 1, "AffectedSOPClassUID": model, "Priority": 0}
            assoc.send(context.id, command, encode_identifier(identifier, context.transfer_syntax, []))
            while True:
                reply = self._reply(assoc, peer, "C-FIND")
                status = int(reply.command.get("Status", 0xC000))
                if status in (0xFF00, 0xFF01):
                    if reply.data is not None and len(answers) < limit:
                        answers.append(decode_identifier(reply.data, context.transfer_syntax))
                    continue
                if status != 0:
                    comment = str(reply.command.get("ErrorComment", ""))
                    raise PeerError(f"{peer} answered the C-FIND with status 0x{status:04X} {comment}".strip())
                break
        except PeerError:
            assoc.abort()
            raise
        assoc.release(self.timeout)
        return answers

    def move(
        self,
        peer: PeerAddress,
        level: str,
        uids: list[str],
        destination: str,
        *,
        progress: Callable[[dict[str, int]], bool] | None = None,
    ) -> dict[str, int]:
        """C-MOVE as SCU (PS3.4 C.4.2): *peer* sends the instances to *destination* (our AE
        title: our C-STORE SCP stores them). Returns the final sub-operation counts;
        *progress(counts)* sees each pending answer and returns False to cancel."""
        model = STUDY_ROOT_MOVE
        assoc = self._associate(peer, [(model, (tsx.EXPLICIT_LE, tsx.IMPLICIT_LE))], self.timeout)
        counts = {"remaining": 0, "completed": 0, "failed": 0, "warning": 0}
        try:
            context = self._context(assoc, peer, model, "C-MOVE")
            key = _RETRIEVE_KEYS[level]
            identifier = {"00080052": {"vr": "CS", "Value": [level]}, key: {"vr": "UI", "Value": uids}}
            command = {
                "CommandField": cmd.C_MOVE_RQ,
                "MessageID": 1,
                "AffectedSOPClassUID": model,
                "Priority": 0,
                "MoveDestination": destination,
            }
            assoc.send(context.id, command, encode_identifier(identifier, context.transfer_syntax, []))
            while True:
                reply = self._reply(assoc, peer, "C-MOVE", timeout_ok=True)
                status = int(reply.command.get("Status", 0xC000))
                self._sub_operation_counts(reply, counts)
                if status == 0xFF00:
                    if progress is not None and not progress(dict(counts)):
                        assoc.send(context.id, {"CommandField": cmd.C_CANCEL_RQ, "MessageIDBeingRespondedTo": 1})
                    continue
                if status not in (0x0000, 0xB000, 0xFE00):
                    comment = str(reply.command.get("ErrorComment", ""))
                    raise PeerError(f"{peer} answered the C-MOVE with status 0x{status:04X} {comment}".strip())
                counts["status"] = status
                break
        except PeerError:
            assoc.abort()
            raise
        assoc.release(self.timeout)
        return counts

    def get(
        self,
        peer: PeerAddress,
        level: str,
        uids: list[str],
        store: Callable[[bytes], int],
        *,
        sop_classes: Iterable[str] = (),
        progress: Callable[[dict[str, int]], bool] | None = None,
    ) -> dict[str, int]:
        """C-GET as SCU (PS3.4 C.4.3) in the Study Root model: *peer* sends the instances
        as C-STORE sub-operations on this association.

        *store(part10)* receives each instance as Part 10 bytes (File Meta Information and
        the data set, in the transfer syntax it arrived in) and returns the status of the
        C-STORE-RSP (0x0000, 0xB000..., 0xA700..., 0xC000...); an exception from it answers
        0xC000. *sop_classes* are the storage SOP classes offered with the SCP role
        (default: :data:`STORAGE_SOP_CLASSES`). *progress(counts)* sees each pending answer
        and returns False to cancel (C-CANCEL-RQ, sent once). Returns the final sub-operation counts and status
        (0x0000, 0xB000 or 0xFE00); another status or a lost association raises PeerError.
        """
        if level not in _RETRIEVE_KEYS:
            raise PeerError(f"C-GET level {level!r} is not one of {', '.join(_RETRIEVE_KEYS)}")
        classes = tuple(dict.fromkeys(sop_classes)) or STORAGE_SOP_CLASSES
        model = STUDY_ROOT_GET
        contexts: list[tuple[str, tuple[str, ...]]] = [(model, _UNCOMPRESSED)]
        for sop_class in classes:
            contexts += [(sop_class, _UNCOMPRESSED), (sop_class, _COMPRESSED)]
        if len(contexts) > _MAX_CONTEXTS:
            raise PeerError(
                f"{len(classes)} storage SOP classes need {len(contexts)} presentation contexts;"
                f" the limit is {_MAX_CONTEXTS}"
            )
        assoc = self._associate(peer, contexts, self.timeout, scp_roles=frozenset(classes))
        counts = {"remaining": 0, "completed": 0, "failed": 0, "warning": 0}
        try:
            context = self._context(assoc, peer, model, "C-GET")
            if not any(c.as_scp for c in assoc.contexts.values() if c.abstract_syntax != model):
                log.warning("%s accepted no storage SOP class with our SCP role: the C-GET cannot deliver", peer)
            identifier = {
                "00080052": {"vr": "CS", "Value": [level]},
                _RETRIEVE_KEYS[level]: {"vr": "UI", "Value": uids},
            }
            command = {"CommandField": cmd.C_GET_RQ, "MessageID": 1, "AffectedSOPClassUID": model, "Priority": 0}
            assoc.send(context.id, command, encode_identifier(identifier, context.transfer_syntax, []))
            cancel_sent = False

            def file_meta(context_id: int, command: dict[str, Any]) -> bytes:
                if command.get("CommandField") != cmd.C_STORE_RQ:
                    return b""
                return encode_file_meta(
                    assoc.contexts[context_id].transfer_syntax,
                    str(command.get("AffectedSOPClassUID", "")),
                    str(command.get("AffectedSOPInstanceUID", "")),
                    peer.ae_title,
                )

            while True:
                reply = self._reply(assoc, peer, "C-GET", timeout_ok=True, prefix=file_meta)
                field = reply.command.get("CommandField")
                if field == cmd.C_STORE_RQ:
                    self._answer_c_store(assoc, peer, reply, store)
                    continue
                if field != cmd.C_GET_RSP or reply.command.get("MessageIDBeingRespondedTo") != 1:
                    log.warning(
                        "%s sent an unexpected %s during the C-GET", peer, cmd.NAMES.get(int(field or 0), field)
                    )
                    continue
                status = int(reply.command.get("Status", 0xC000))
                self._sub_operation_counts(reply, counts)
                if status == 0xFF00:
                    if progress is not None and not cancel_sent and not progress(dict(counts)):
                        assoc.send(context.id, {"CommandField": cmd.C_CANCEL_RQ, "MessageIDBeingRespondedTo": 1})
                        cancel_sent = True
                    continue
                if "NumberOfRemainingSuboperations" not in reply.command:
                    counts["remaining"] = 0
                if status not in (0x0000, 0xB000, 0xFE00):
                    comment = str(reply.command.get("ErrorComment", ""))
                    done = f"{counts['completed']} completed, {counts['failed']} failed"
                    raise PeerError(
                        f"{peer} answered the C-GET with status 0x{status:04X} {comment}".strip() + f" ({done})"
                    )
                counts["status"] = status
                break
        except (Aborted, TimeoutError) as exc:  # while we sent a C-STORE-RSP or C-CANCEL-RQ
            assoc.abort()
            raise PeerError(f"{peer} ended the association during the C-GET: {exc or 'timeout'}") from exc
        except PeerError:
            assoc.abort()
            raise
        assoc.release(self.timeout)
        return counts

    @staticmethod
    def _sub_operation_counts(reply: Message, counts: dict[str, int]) -> None:
        for name, field in (("remaining", "NumberOfRemainingSuboperations"),
                            ("completed", "NumberOfCompletedSuboperations"),
                            ("failed", "NumberOfFailedSuboperations"),
                            ("warning", "NumberOfWarningSuboperations")):  # fmt: skip
            if field in reply.command:
                counts[name] = int(reply.command[field])

    @staticmethod
    def _answer_c_store(assoc: Association, peer: PeerAddress, msg: Message, store: Callable[[bytes], int]) -> None:
        """A C-STORE sub-operation of a C-GET (PS3.4 C.4.3.3): hand it to *store*, answer its status."""
        sop_instance = str(msg.command.get("AffectedSOPInstanceUID", ""))
        comment = ""
        if msg.data is None:
            status, comment = 0xC000, "the C-STORE-RQ has no data set"
        else:
            try:
                status = int(store(msg.data)) & 0xFFFF
            except Exception as exc:
                log.exception("storing %s received from %s by C-GET failed", sop_instance, peer)
                status, comment = 0xC000, f"cannot store: {type(exc).__name__}"
        response: dict[str, Any] = {
            "CommandField": cmd.C_STORE_RSP,
            "MessageIDBeingRespondedTo": msg.command.get("MessageID", 0),
            "AffectedSOPClassUID": msg.command.get("AffectedSOPClassUID", ""),
            "AffectedSOPInstanceUID": sop_instance,
            "Status": status,
        }
        if comment:
            response["ErrorComment"] = comment
        assoc.send(msg.context_id, response)

    @staticmethod
    def _context(assoc: Association, peer: PeerAddress, model: str, what: str) -> Any:
        offered = assoc.contexts_for(model)
        if not offered:
            raise PeerError(f"{peer} accepted the association but not the {what} information model {model}")
        return offered[0]

    @staticmethod
    def _reply(
        assoc: Association,
        peer: PeerAddress,
        what: str,
        *,
        timeout_ok: bool = False,
        prefix: Callable[[int, dict[str, Any]], bytes] | None = None,
    ) -> Message:
        while True:
            try:
                return assoc.receive(prefix)
            except TimeoutError as exc:
                if timeout_ok:
                    continue  # a C-MOVE or C-GET of a large study answers between sub-operations only
                raise PeerError(f"{peer} did not answer the {what} in time") from exc
            except (Aborted, ReleaseRequested, ProtocolError) as exc:
                raise PeerError(f"{peer} ended the association during the {what}: {exc}") from exc

    def send(
        self,
        peer: PeerAddress,
        instances: Iterable[OutgoingInstance],
        *,
        move_originator: tuple[str, int] | None = None,
        progress: Callable[[str, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> SendResult:
        """C-STORE each instance over one association (PS3.4 B.2).

        *progress(uid, outcome)* is called after each: 0 success, 1 warning, 2 failure.
        """
        batch = list(instances)
        result = SendResult()
        if not batch:
            return result
        wanted: dict[str, set[str]] = {}
        for item in batch:
            wanted.setdefault(item.sop_class_uid, set()).add(item.transfer_syntax_uid)
        contexts: list[tuple[str, tuple[str, ...]]] = []
        for sop_class, stored in wanted.items():
            for syntax in sorted(stored):
                if syntax not in (tsx.EXPLICIT_LE, tsx.IMPLICIT_LE):
                    contexts.append((sop_class, (syntax,)))
            contexts.append((sop_class, (tsx.EXPLICIT_LE, tsx.IMPLICIT_LE)))
        if len(contexts) > _MAX_CONTEXTS:
            raise PeerError(f"{len(contexts)} presentation contexts would be needed; the limit is {_MAX_CONTEXTS}")
        assoc = self._associate(peer, contexts, self.timeout)
        # the next instance is read (and transcoded if need be) while the current one is in flight
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="send-prepare") as reader:
            upcoming = reader.submit(self._prepare, assoc, batch[0])
            try:
                for n, item in enumerate(batch):
                    prepared = upcoming.result()
                    if n + 1 < len(batch):
                        upcoming = reader.submit(self._prepare, assoc, batch[n + 1])
                    if cancelled is not None and cancelled():
                        break
                    outcome, reason = self._store_one(assoc, item, prepared, move_originator)
                    if outcome == 0:
                        result.completed.append(item.sop_instance_uid)
                    elif outcome == 1:
                        result.warnings.append(item.sop_instance_uid)
                    else:
                        result.failed[item.sop_instance_uid] = reason
                    if progress is not None:
                        progress(item.sop_instance_uid, outcome)
            except (Aborted, TimeoutError, ProtocolError, ReleaseRequested) as exc:
                # what was sent stays sent; the rest failed (the caller reports both)
                reason = f"association with {peer} ended: {exc or 'timeout'}"
                log.warning("%s", reason)
                for item in batch[result.attempted :]:
                    result.failed[item.sop_instance_uid] = reason
                assoc.abort()
                return result
        assoc.release(self.timeout)
        return result

    @staticmethod
    def _prepare(assoc: Association, item: OutgoingInstance) -> tuple[int, bytes | memoryview] | str:
        """(context ID, data set bytes) to send *item* on, or the reason it cannot be sent."""
        offered = assoc.contexts_for(item.sop_class_uid)
        if not offered:
            return "the peer accepted no presentation context for this SOP class"
        try:
            syntax, data = item.data(tuple(c.transfer_syntax for c in offered))
        except OpenPacsError as exc:
            return exc.reason
        except OSError as exc:
            return f"cannot read the stored file: {exc}"
        except Exception as exc:
            log.exception("cannot prepare %s for sending", item.sop_instance_uid)
            return f"cannot encode: {type(exc).__name__}"
        return next(c.id for c in offered if c.transfer_syntax == syntax), data

    def _store_one(
        self,
        assoc: Association,
        item: OutgoingInstance,
        prepared: tuple[int, bytes | memoryview] | str,
        move_originator: tuple[str, int] | None,
    ) -> tuple[int, str]:
        if isinstance(prepared, str):
            return 2, prepared
        context_id, data = prepared
        message_id = assoc.next_message_id()
        command = {
            "CommandField": cmd.C_STORE_RQ,
            "MessageID": message_id,
            "AffectedSOPClassUID": item.sop_class_uid,
            "AffectedSOPInstanceUID": item.sop_instance_uid,
            "Priority": 0,
        }
        if move_originator is not None:
            command["MoveOriginatorApplicationEntityTitle"] = move_originator[0]
            command["MoveOriginatorMessageID"] = move_originator[1]
        assoc.send(context_id, command, data)
        try:
            reply = assoc.receive()
        except TimeoutError as exc:
            raise Aborted("no C-STORE response in time") from exc
        status = int(reply.command.get("Status", 0xC000))
        if status == 0:
            return 0, ""
        if status & 0xF000 == 0xB000:
            return 1, f"warning 0x{status:04X}"
        comment = str(reply.command.get("ErrorComment", ""))
        return 2, f"status 0x{status:04X}" + (f": {comment}" if comment else "")
