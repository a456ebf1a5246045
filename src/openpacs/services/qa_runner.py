"""The machinery every correction shares: one transaction per operation, with its audit
record, change-feed rows and journal entry (ARCHITECTURE.md section 3).

An operation is planned inside the unit of work that applies it (``plan(session)``), its
edits checked against the index and applied (``qa_edits``); a dry run plans and checks in
a read-only unit of work and applies nothing. The journal entry (an append-only JSON
record in the blob store) is durable before the transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from openpacs.domain.errors import Conflict, InvalidQuery, NotFound
from openpacs.domain.qa import SOURCES, Edit, EditKind, Operation
from openpacs.domain.records import Actor, StoredInstance
from openpacs.domain.tags import Level
from openpacs.ports.blobstore import BlobStore
from openpacs.ports.index import AuditRecord, Index, IndexSession
from openpacs.services import journal, qa_edits
from openpacs.services.ingest import IngestService

log = logging.getLogger(__name__)
NOUN = {Level.STUDY: "study", Level.SERIES: "series", Level.IMAGE: "instance", Level.PATIENT: "patient"}


@dataclass(frozen=True)
class Editable:
    """The keywords an administrator may change at each level (settings ``qa.*``)."""

    patient: tuple[str, ...]
    study: tuple[str, ...]
    series: tuple[str, ...]

    def of(self, level: Level) -> tuple[str, ...]:
        return {Level.PATIENT: self.patient, Level.STUDY: self.study, Level.SERIES: self.series}[level]


class QaRunner:
    """Runs corrections; thread-safe, one transaction per operation."""

    def __init__(
        self,
        index: Index,
        blobs: BlobStore,
        ingest: IngestService,
        *,
        editable: Editable,
        clock: Callable[[], datetime],
        purge_after: timedelta = timedelta(days=30),
        deletion_grace: timedelta = timedelta(seconds=60),
    ) -> None:
        self._purge_after = purge_after
        self._deletion_grace = deletion_grace
        self._index = index
        self._blobs = blobs
        self._ingest = ingest
        self._editable = editable
        self._clock = clock

    # -- planning helpers ------------------------------------------------------------------

    def _visible(self, level: Level, uid: str) -> list[StoredInstance]:
        with self._index.session() as session:
            found = session.stored_instances(level, [uid])
        if not found:
            raise NotFound(f"no visible {NOUN[level]} {uid}")
        return found

    def _withdraw(self, sop_instance_uid: str) -> None:
        """Remove a rejection note whose operation did not commit."""
        try:
            now = self._clock()
            with self._index.session(write=True) as session:
                removed = session.remove(Level.IMAGE, sop_instance_uid)
                session.add_pending_deletions([(b, "rejection note withdrawn") for b in removed.blobs], now, now)
        except Exception:
            log.exception("could not withdraw rejection note %s", sop_instance_uid)

    def _run(
        self,
        plan: Callable[[IndexSession], Operation],
        actor: Actor,
        dry_run: bool,
        resolves: Sequence[int] = (),
    ) -> Operation:
        if dry_run:
            with self._index.session() as session:
                operation = self._planned(session, plan, resolves)
                qa_edits.check(session, operation.edits)
            return operation
        now = self._clock()
        with self._journaled() as written, self._index.session(write=True) as session:
            operation = self._planned(session, plan, resolves)
            if not operation.reason.strip():
                raise InvalidQuery("a reason is required")
            if operation.source not in SOURCES:
                raise InvalidQuery(f"an operation comes from {', '.join(SOURCES)}, not {operation.source!r}")
            qa_edits.check(session, operation.edits)
            patients = journal.patients_of(session, operation.edits)
            qa_edits.apply(session, operation.edits, now)
            operation.id = session.add_operation(operation, actor, now)
            operation.actor, operation.created_at = actor, now
            session.add_changes(list(qa_edits.changes(operation)), now)
            session.add_audit([self._audit(operation, actor, now)])
            # the journal entry is durable before the transaction commits (ARCHITECTURE.md 3)
            written.append(journal.write(self._blobs, operation, now, patients=patients))
        log.info("operation %d %s by %s: %s", operation.id, operation.kind, actor.id, operation.reason)
        return operation

    @staticmethod
    def _planned(
        session: IndexSession, plan: Callable[[IndexSession], Operation], resolves: Sequence[int]
    ) -> Operation:
        """The operation *plan* makes, closing the inbox conflicts it *resolves*."""
        operation = plan(session)
        for pk in dict.fromkeys(resolves):
            found = session.conflict(pk)
            if found is None:
                raise NotFound(f"no identity conflict {pk} in the inbox")
            if found[1] is not None:
                raise Conflict(f"identity conflict {pk} is already resolved")
            edit = Edit(EditKind.CONFLICT, {"level": "CONFLICT", "pk": pk}, None, "resolved")
            operation.edits.append(edit)
            operation.summary.setdefault("changes", []).append(
                {"object": edit.object_key(), "conflict": {"old": "open", "new": "resolved"}}
            )
        if resolves:
            operation.params["resolves"] = list(dict.fromkeys(resolves))
        return operation

    @staticmethod
    def _audit(operation: Operation, actor: Actor, now: datetime) -> AuditRecord:
        resources = []
        for object_key in operation.objects()[:100]:
            level, _, name = object_key.partition(":")
            resources.append({"level": level, ("uid" if level in ("STUDY", "SERIES") else "pk"): name})
        return AuditRecord(
            time=now,
            actor=actor,
            action=f"qa-{operation.kind}",
            outcome="success",
            resources=resources,
            details={
                "operation": operation.id,
                # local edits are marked as such: the ADT source (hl7) wins over them
                "source": operation.source,
                "reason": operation.reason,
                "params": operation.params,
                "before_after": [e.to_json() for e in operation.edits],
            },
        )

    @contextmanager
    def _journaled(self) -> Iterator[list[str]]:
        """Journal entries written inside a transaction that then fails are taken back."""
        written: list[str] = []
        try:
            yield written
        except BaseException:
            for key in written:
                self._blobs.delete(key)
            raise
