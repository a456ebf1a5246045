"""IngestService: the one way an instance enters the archive (ARCHITECTURE.md section 3).

C-STORE, STOW-RS, ``openpacs import`` and retrieval from peers all end in
:meth:`IngestService.store`: write the bytes as received (durably) while the header is
vetted, then one index transaction (shared with concurrent stores) with the identity, the
instance, its location, aggregates, audit and change feed rows. Success is returned
only after that commit.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import (
    DuplicateRejected,
    InstanceTooLarge,
    InvalidInstance,
    OpenPacsError,
    OutOfResources,
    RejectedInstance,
    SopClassMismatch,
)
from openpacs.domain.part10 import ParsedInstance, parse_part10
from openpacs.domain.qa import DERIVED, DERIVED_TRANSPORT, NOTE, Edit, EditKind, Operation, OperationKind
from openpacs.domain.records import BlobRef, Origin, StoreOutcome, StoreStatus
from openpacs.domain.tags import Level, json_key, tag_of
from openpacs.ports.blobstore import BlobStore, StorageFull
from openpacs.ports.index import AuditRecord, ChangeRecord, Index, IndexSession, NewInstance
from openpacs.services import journal
from openpacs.services.commit import Batch, GroupCommitter
from openpacs.services.identity import MODALITY, Attacher
from openpacs.services.iocm import REJECTION_TRANSPORT, referenced_instances, rejection_code

log = logging.getLogger(__name__)

_INSTANCE_NUMBER = json_key(tag_of("InstanceNumber"))
#: outcomes whose new blob no location refers to
_NOT_KEPT = frozenset({StoreStatus.DUPLICATE, StoreStatus.DUPLICATE_DIFFERS, StoreStatus.REJECTED, StoreStatus.REFUSED})


@dataclass(frozen=True)
class IngestPolicy:
    """The receive policy (settings [dicom] and [storage])."""

    duplicate_policy: str = "keep-first"
    rejected_resend: str = "refuse"  # a rejected or soft-deleted SOP Instance UID sent again
    rejected_resend_by_code: dict[str, str] = field(default_factory=dict)  # per code (or "deleted")
    max_instance_bytes: int = 4 * 1024**3
    max_nesting_depth: int = 12
    bulk_data_threshold: int = 1024


def _keep(write: Future[None], key: str) -> None:
    """Blobs the index rebuild indexes in place are never deleted by the ingest."""


class IngestService:
    """Stores instances; thread-safe."""

    def __init__(
        self,
        index: Index,
        blobs: BlobStore,
        committer: GroupCommitter,
        policy: IngestPolicy,
        clock: Callable[[], datetime],
    ) -> None:
        self._index = index
        self._blobs = blobs
        self._committer = committer
        self._policy = policy
        self._clock = clock
        self._writer = ThreadPoolExecutor(max_workers=16, thread_name_prefix="blob-write")

    @property
    def policy(self) -> IngestPolicy:
        """The receive policy in force."""
        return self._policy

    def parse(self, data: bytes | memoryview, *, transfer_syntax_uid: str | None = None) -> ParsedInstance:
        """Vet a Part 10 stream against the limits; raise the error a door reports."""
        if len(data) > self._policy.max_instance_bytes:
            raise InstanceTooLarge(
                f"the instance has {len(data)} bytes, more than the limit of {self._policy.max_instance_bytes}"
            )
        return parse_part10(
            data,
            bulk_threshold=self._policy.bulk_data_threshold,
            max_depth=self._policy.max_nesting_depth,
            transfer_syntax_uid=transfer_syntax_uid,
        )

    def store(
        self,
        data: bytes,
        origin: Origin,
        *,
        expected_sop_class_uid: str | None = None,
        expected_sop_instance_uid: str | None = None,
        parsed: ParsedInstance | None = None,
        stored_key: str | None = None,
    ) -> StoreOutcome:
        """Store one Part 10 instance; see :meth:`_store`. *parsed* is what :meth:`parse` gave
        for these very bytes, when the caller has already vetted them. With *stored_key*, the
        bytes are already in the blob store under that key (the index rebuild): they are
        indexed where they lie, and never deleted here."""
        with self._committer.expecting():
            return self._store(data, origin, expected_sop_class_uid, expected_sop_instance_uid, parsed, stored_key)

    def _store(
        self,
        data: bytes,
        origin: Origin,
        expected_sop_class_uid: str | None,
        expected_sop_instance_uid: str | None,
        vetted: ParsedInstance | None = None,
        stored_key: str | None = None,
    ) -> StoreOutcome:
        """Store one Part 10 instance (File Meta + data set, as received).

        The durable write of the bytes starts at once, while the header is vetted and the
        index transaction prepared; the transaction commits only once the write is durable.
        Raises an OpenPacsError subclass carrying the DIMSE and HTTP status when the
        instance is refused; nothing is changed then.
        """
        if len(data) > self._policy.max_instance_bytes:
            too_large = InstanceTooLarge(
                f"the instance has {len(data)} bytes, more than the limit of {self._policy.max_instance_bytes}"
            )
            self._audit_refusal(origin, too_large, expected_sop_instance_uid)
            raise too_large
        if stored_key is None:
            key = self._blobs.new_key(self._clock())
            write = self._writer.submit(self._blobs.put, key, data)
        else:
            key, write = stored_key, Future()
            write.set_result(None)
        blob = BlobRef(self._blobs.name, key, len(data))
        discard = self._discard if stored_key is None else _keep
        try:
            parsed = vetted if vetted is not None else self.parse(data)
            if expected_sop_class_uid and parsed.sop_class_uid != expected_sop_class_uid:
                raise SopClassMismatch(
                    f"the data set's SOP Class UID {parsed.sop_class_uid} differs from the request's "
                    f"Affected SOP Class UID {expected_sop_class_uid}"
                )
            if expected_sop_instance_uid and parsed.sop_instance_uid != expected_sop_instance_uid:
                raise SopClassMismatch(
                    f"the data set's SOP Instance UID {parsed.sop_instance_uid} differs from the request's "
                    f"Affected SOP Instance UID {expected_sop_instance_uid}"
                )
            checksum = hashlib.sha256(data).hexdigest()
        except OpenPacsError as exc:
            discard(write, key)
            self._audit_refusal(origin, exc, expected_sop_instance_uid)
            raise
        except BaseException:
            discard(write, key)
            raise
        try:
            outcome = self._committer.submit(
                lambda s, b: self._apply(s, b, parsed, origin, blob, checksum), durable=write
            )
        except StorageFull as exc:
            discard(write, key)
            full = OutOfResources(f"storage is full: {exc}")
            self._audit_refusal(origin, full, parsed.sop_instance_uid)
            raise full from exc
        except BaseException:
            # the outcome of a failed commit may be unknown: the sweeper deletes the blob
            # only if no location refers to it
            if stored_key is None:
                self._revoke(blob)
            raise
        if outcome.status in _NOT_KEPT:
            discard(write, key)
        if outcome.error is not None:
            raise outcome.error
        if outcome.status is StoreStatus.DUPLICATE_DIFFERS:
            log.warning(
                "duplicate SOP Instance %s from %s differs from the stored copy; the first copy is kept",
                outcome.sop_instance_uid,
                origin.actor.id,
            )
        return outcome

    def _apply_rejection_note(
        self, session: IndexSession, batch: Batch, parsed: ParsedInstance, origin: Origin, code: str
    ) -> None:
        """A rejection note received from a modality, workstation or peer (IHE IOCM): the
        instances it references are hidden in the note's own transaction, as an operation
        (source ``dicom``) that an administrator can see and undo; the note is kept for
        peers and hidden from clinical users like our own."""
        note = parsed.sop_instance_uid
        edits = []
        for uid in referenced_instances(parsed.header):
            states = session.instance_states(Level.IMAGE, uid)
            if states and states[0].hidden is None:
                edits.append(Edit(EditKind.HIDDEN, {"level": "IMAGE", "uid": uid}, None, code))
        session.set_hidden([note], NOTE, batch.now)
        if not edits:
            log.info("rejection note %s from %s references nothing visible here", note, origin.actor.id)
            return
        session.set_hidden([e.target["uid"] for e in edits], code, batch.now)
        operation = Operation(
            OperationKind.REJECT,
            f"rejection note {note} received from {origin.actor.id}",
            {"level": "IMAGE", "note": note, "code": code},
            edits,
            {"level": "IMAGE", "name": note, "affected": {"instances": len(edits)}, "rejection_note": note},
            source="dicom",
        )
        operation.id = session.add_operation(operation, origin.actor, batch.now)
        operation.actor, operation.created_at = origin.actor, batch.now
        # journaled like the administrator's operations: an index rebuild replays it
        journal.write(self._blobs, operation, batch.now, patients={})
        batch.changes.extend(ChangeRecord("instance_hidden", Level.IMAGE, e.target["uid"]) for e in edits)
        batch.audit.append(
            AuditRecord(
                batch.now,
                origin.actor,
                "qa-reject",
                "success",
                [{"level": "IMAGE", "uid": e.target["uid"]} for e in edits[:100]],
                {"operation": operation.id, "rejection_note": note, "code": code, "transport": origin.transport},
            )
        )
        log.info("rejection note %s (%s) from %s hid %d instances", note, code, origin.actor.id, len(edits))

    def _resent_hidden(
        self, session: IndexSession, batch: Batch, parsed: ParsedInstance, origin: Origin, state: str
    ) -> StoreOutcome:
        """A rejected or soft-deleted instance sent again (IHE IOCM): ``dicom.rejected_resend``
        refuses it (0xA771), ignores it (success, nothing changes) or shows the stored copy again."""
        sop_uid, study_uid = parsed.sop_instance_uid, parsed.study_instance_uid
        policy = self._policy.rejected_resend_by_code.get(state, self._policy.rejected_resend)
        if policy == "refuse":
            self._audit(batch, parsed, origin, "rejected-resend-refused")
            refused = RejectedInstance(f"SOP Instance {sop_uid} was rejected ({state}); it is not taken again")
            return StoreOutcome(StoreStatus.REJECTED, sop_uid, study_uid, error=refused)
        if policy == "restore":
            session.set_hidden([sop_uid], None, batch.now)
            batch.changes.append(ChangeRecord("instance_shown", Level.IMAGE, sop_uid))
            self._audit(batch, parsed, origin, "rejected-resend-restored")
            return StoreOutcome(StoreStatus.DUPLICATE, sop_uid, study_uid, warning=f"restored (was {state})")
        self._audit(batch, parsed, origin, "rejected-resend-ignored")
        return StoreOutcome(StoreStatus.DUPLICATE, sop_uid, study_uid)

    def _resent_moved(self, batch: Batch, parsed: ParsedInstance, origin: Origin, moved_to: str) -> StoreOutcome:
        """An instance reallocated under a new SOP Instance UID, sent again under its old one
        (rejected, 113038): refused (0xA771) or ignored as ``dicom.rejected_resend`` says for
        113038; never stored again beside its new identity (``restore`` ignores it)."""
        sop_uid, study_uid = parsed.sop_instance_uid, parsed.study_instance_uid
        policy = self._policy.rejected_resend_by_code.get("113038", self._policy.rejected_resend)
        if policy == "refuse":
            self._audit(batch, parsed, origin, "rejected-resend-refused")
            refused = RejectedInstance(
                f"SOP Instance {sop_uid} was reallocated as {moved_to}; its old identity is rejected (113038)"
            )
            return StoreOutcome(StoreStatus.REJECTED, sop_uid, study_uid, error=refused)
        self._audit(batch, parsed, origin, "rejected-resend-ignored")
        return StoreOutcome(StoreStatus.DUPLICATE, sop_uid, study_uid, warning=f"kept as {moved_to}")

    def _discard(self, write: Future[None], key: str) -> None:
        """Remove a blob no transaction refers to (its write may still be running)."""
        try:
            write.result()
        except Exception:
            return
        try:
            self._blobs.delete(key)
        except OSError:
            log.warning("could not remove unreferenced blob %s; the orphan scan will", key)

    def _revoke(self, blob: BlobRef) -> None:
        """A blob whose transaction did not commit goes to pending deletion (the sweeper removes it)."""
        try:
            with self._index.session(write=True) as session:
                now = self._clock()
                session.add_pending_deletions([(blob, "transaction did not commit")], now, now)
        except Exception:
            log.exception("could not queue %s for deletion; the orphan scan will remove it", blob.key)

    @staticmethod
    def _refusal_record(
        origin: Origin, error: OpenPacsError, sop_instance_uid: str | None, now: datetime
    ) -> AuditRecord:
        return AuditRecord(
            time=now,
            actor=origin.actor,
            action="store",
            outcome="refused",
            resources=[{"level": "IMAGE", "uid": sop_instance_uid}] if sop_instance_uid else [],
            details={"transport": origin.transport, "status": f"0x{error.dimse_status:04X}", "reason": error.reason},
        )

    def _audit_refusal(self, origin: Origin, error: OpenPacsError, sop_instance_uid: str | None) -> None:
        """Record a refused instance in the audit (nothing else changes)."""
        record = self._refusal_record(origin, error, sop_instance_uid, self._clock())
        try:
            self._committer.submit(lambda _s, b: b.audit.append(record))
        except Exception:
            log.exception("could not audit a refused instance")

    def close(self) -> None:
        """Let the writes in progress finish."""
        self._writer.shutdown(wait=True)

    def _audit(self, batch: Batch, parsed: ParsedInstance, origin: Origin, outcome: str) -> None:
        batch.audit.append(
            AuditRecord(
                time=batch.now,
                actor=origin.actor,
                action="store",
                outcome=outcome,
                resources=[
                    {"level": "IMAGE", "uid": parsed.sop_instance_uid},
                    {"level": "STUDY", "uid": parsed.study_instance_uid},
                ],
                details={"transport": origin.transport, "called_ae": origin.called_ae},
            )
        )

    def _apply(
        self,
        session: IndexSession,
        batch: Batch,
        parsed: ParsedInstance,
        origin: Origin,
        blob: BlobRef,
        checksum: str,
    ) -> StoreOutcome:
        sop_uid = parsed.sop_instance_uid
        earlier = next((row for row in batch.instances if row.sop_instance_uid == sop_uid), None)
        existing = None if earlier is not None else session.instance_brief(sop_uid)
        if existing is not None and existing.moved_to is not None:
            return self._resent_moved(batch, parsed, origin, existing.moved_to)
        if existing is not None and existing.hidden is not None and existing.hidden != NOTE:
            return self._resent_hidden(session, batch, parsed, origin, existing.hidden)
        if earlier is not None or existing is not None:
            if self._policy.duplicate_policy == "reject":
                self._audit(batch, parsed, origin, "duplicate-rejected")
                rejected = DuplicateRejected(f"SOP Instance {sop_uid} is already stored")
                return StoreOutcome(StoreStatus.REJECTED, sop_uid, parsed.study_instance_uid, error=rejected)
            if self._policy.duplicate_policy == "keep-first":
                first_checksum = earlier.checksum if earlier is not None else existing.checksum  # type: ignore[union-attr]
                differs = first_checksum != checksum
                status = StoreStatus.DUPLICATE_DIFFERS if differs else StoreStatus.DUPLICATE
                self._audit(batch, parsed, origin, str(status))
                return StoreOutcome(
                    status,
                    sop_uid,
                    parsed.study_instance_uid,
                    warning="a different instance with this SOP Instance UID is already stored" if differs else "",
                )
            if earlier is not None:
                # overwrite within one transaction: this copy takes the earlier one's place
                batch.instances.remove(earlier)
                batch.superseded.append((earlier.blob, "replaced by a newer copy (overwrite policy)"))

        try:
            attachment = Attacher(session, batch).attach(
                parsed.header, sop_uid, origin.default_issuer, origin.calling_ae
            )
        except InvalidInstance as exc:
            # found before anything was written (a Series Instance UID of another study)
            batch.audit.append(self._refusal_record(origin, exc, sop_uid, batch.now))
            return StoreOutcome(StoreStatus.REFUSED, sop_uid, parsed.study_instance_uid, error=exc)
        number = dj.first(parsed.header, _INSTANCE_NUMBER)
        row = NewInstance(
            series_pk=attachment.series_pk,
            sop_instance_uid=sop_uid,
            sop_class_uid=parsed.sop_class_uid,
            instance_number=number if isinstance(number, int) else None,
            transfer_syntax_uid=parsed.transfer_syntax_uid,
            header=parsed.header,
            source_ae_title=origin.calling_ae,
            called_ae_title=origin.called_ae,
            received_at=batch.now,
            blob=blob,
            checksum=checksum,
        )
        batch.conflicts.extend(attachment.conflicts)
        if existing is not None:
            session.replace_instance(existing.pk, row)
            batch.superseded.append((existing.blob, "replaced by a newer copy (overwrite policy)"))
            batch.changes.append(ChangeRecord("instance_replaced", Level.IMAGE, sop_uid))
            self._audit(batch, parsed, origin, str(StoreStatus.REPLACED))
            return StoreOutcome(StoreStatus.REPLACED, sop_uid, parsed.study_instance_uid)

        batch.instances.append(row)
        delta = batch.delta(attachment.patient_pk, attachment.study_pk, attachment.series_pk)
        if attachment.study is not None and attachment.study.modalities is not None:
            delta.known_modalities = attachment.study.modalities
            delta.known_sop_classes = attachment.study.sop_classes
        delta.new_instances += 1
        delta.size_bytes += blob.size
        delta.sop_classes.add(parsed.sop_class_uid)
        if attachment.new_study:
            delta.new_studies += 1
        if attachment.new_series:
            delta.new_series += 1
            delta.modalities.add(dj.text(parsed.header, MODALITY))
        if attachment.new_patient:
            batch.changes.append(ChangeRecord("patient_created", Level.PATIENT, str(attachment.patient_pk)))
        if attachment.new_study:
            batch.changes.append(ChangeRecord("study_created", Level.STUDY, parsed.study_instance_uid))
        if attachment.new_series:
            batch.changes.append(ChangeRecord("series_created", Level.SERIES, parsed.series_instance_uid))
        batch.changes.append(ChangeRecord("instance_stored", Level.IMAGE, sop_uid))
        # our own notes (qa reject) are applied by the operation that writes them
        code = None if origin.transport == REJECTION_TRANSPORT else rejection_code(parsed.sop_class_uid, parsed.header)
        if code is not None:
            batch.after_flush.append(lambda s: self._apply_rejection_note(s, batch, parsed, origin, code))
        if origin.transport == DERIVED_TRANSPORT:
            # a lossy copy made for routing: never visible to queries, from its first commit
            batch.after_flush.append(lambda s: s.set_hidden([sop_uid], DERIVED, batch.now))
        outcome = "success-identity-conflict" if attachment.conflicts else "success"
        self._audit(batch, parsed, origin, outcome)
        return StoreOutcome(
            StoreStatus.STORED,
            sop_uid,
            parsed.study_instance_uid,
            identity_conflict=bool(attachment.conflicts),
        )
