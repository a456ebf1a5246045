"""Rebuilding the index from storage: every stored object indexed again where it lies, and
the corrections of the journal replayed among them in time order (ARCHITECTURE.md
section 3: the journal is what keeps a rebuilt index from resurrecting wrong patients).

The blob store holds the objects as received (keys ``YYYY/MM/DD/HH/<uuid>.dcm``, with their
modification time) and the journal (``journal/YYYY/MM/DD/<id>.json``, one record per
operation, written before the operation committed). The rebuild walks both in time
order: the objects stored before an operation are indexed, then the operation is applied
as it was recorded (its new UIDs, its edits), then the objects that came after it, which
therefore follow a merge or a move as they did the first time.

Replay applies each edit's intent, not its precondition: an edit whose object is no
longer in storage (deleted, purged) is skipped and counted; patients are found again by
the identifiers the journal recorded for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import OpenPacsError
from openpacs.domain.qa import DERIVED_TRANSPORT, LOSSY_COPY_MARK, NOTE, Edit, EditKind, Operation
from openpacs.domain.records import Actor, ActorType, Origin
from openpacs.domain.tags import Level
from openpacs.ports.blobstore import BlobStore
from openpacs.ports.index import AuditRecord, Index, IndexSession
from openpacs.services import journal, qa_edits
from openpacs.services.ingest import IngestService
from openpacs.services.iocm import REJECTION_TRANSPORT, rejection_code

log = logging.getLogger(__name__)

JOURNAL = journal.PREFIX


@dataclass
class RebuildReport:
    """What a rebuild did, for the administrator."""

    objects: int = 0
    indexed: int = 0
    not_indexed: list[dict[str, str]] = field(default_factory=list)  # key, reason (first 1000)
    operations: int = 0
    edits_skipped: int = 0
    notes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "indexed": self.indexed,
            "not_indexed": len(self.not_indexed),
            "not_indexed_first": self.not_indexed[:1000],
            "operations_replayed": self.operations,
            "edits_skipped": self.edits_skipped,
            "rejection_notes": self.notes,
        }


@dataclass(frozen=True)
class JournalEntry:
    """One operation as the journal recorded it."""

    time: datetime
    record: dict[str, Any]

    @property
    def id(self) -> int:
        return int(self.record["id"])


class RebuildService:
    """Rebuilds an empty index from the blob store; one run at a time, server stopped."""

    def __init__(self, index: Index, blobs: BlobStore, ingest: IngestService, *, clock: Callable[[], datetime]) -> None:
        self._index = index
        self._blobs = blobs
        self._ingest = ingest
        self._clock = clock

    def journal(self) -> list[JournalEntry]:
        """Every journal record, in operation order (of two records of one operation, left by
        a transaction that never committed and by the one that did, the later)."""
        entries: dict[int, JournalEntry] = {}
        for key, _ in self._blobs.walk(JOURNAL):
            record = orjson.loads(self._blobs.read(key))
            if record.get("journal") != "openpacs-qa":
                continue
            created = datetime.fromisoformat(record["created_at"])
            entry = JournalEntry(created if created.tzinfo else created.replace(tzinfo=UTC), record)
            if entry.id not in entries or entries[entry.id].time < entry.time:
                entries[entry.id] = entry
        return sorted(entries.values(), key=lambda e: e.id)

    def rebuild(self, actor: Actor, progress: Callable[[RebuildReport], None] | None = None) -> RebuildReport:
        """Index every stored object and replay the journal; the index must be empty."""
        with self._index.session() as session:
            if not session.is_empty():
                raise OpenPacsError("the index is not empty: rebuild into a new, empty database")
        report = RebuildReport()
        entries = self.journal()
        objects = sorted(
            ((mtime, key) for key, mtime in self._blobs.walk("") if not key.startswith(JOURNAL)),
        )
        report.objects = len(objects)
        pending = iter(entries)
        entry = next(pending, None)
        for mtime, key in objects:
            when = datetime.fromtimestamp(mtime, UTC)
            while entry is not None and entry.time <= when:
                self._replay(entry, report)
                entry = next(pending, None)
            self._index_object(key, report)
            if progress is not None and report.indexed % 1000 == 0:
                progress(report)
        while entry is not None:
            self._replay(entry, report)
            entry = next(pending, None)
        now = self._clock()
        with self._index.session(write=True) as session:
            session.reset_operation_sequence()
            session.add_audit(
                [AuditRecord(now, actor, "index-rebuild", "success", [], report.to_json() | {"not_indexed_first": []})]
            )
        log.info("index rebuilt: %s", report.to_json() | {"not_indexed_first": len(report.not_indexed)})
        return report

    def _index_object(self, key: str, report: RebuildReport) -> None:
        """Index one stored object in place. Rejection notes are indexed and hidden, not applied:
        what they did (ours and those received) is in the journal, replayed in its turn."""
        data = self._blobs.read(key)
        try:
            parsed = self._ingest.parse(data)
            note = rejection_code(parsed.sop_class_uid, parsed.header) is not None
            transport = REJECTION_TRANSPORT if note else "rebuild"
            if dj.text(parsed.header, "00082111").startswith(LOSSY_COPY_MARK):
                transport = DERIVED_TRANSPORT  # a lossy copy made for routing: hidden again
            origin = Origin(Actor(ActorType.SYSTEM, "rebuild"), transport, calling_ae="")
            self._ingest.store(data, origin, parsed=parsed, stored_key=key)
        except OpenPacsError as exc:
            report.not_indexed.append({"key": key, "reason": exc.reason})
            return
        report.indexed += 1
        if note:
            report.notes += 1
            with self._index.session(write=True) as session:
                session.set_hidden([parsed.sop_instance_uid], NOTE, self._clock())

    def _replay(self, entry: JournalEntry, report: RebuildReport) -> None:
        record = entry.record
        operation = Operation.from_json(record)
        with self._index.session(write=True) as session:
            pks = self._patients(session, record.get("patients") or {})
            edits = []
            for edit in operation.edits:
                mapped = _mapped(edit, pks)
                if mapped is None or not _present(session, mapped):
                    report.edits_skipped += 1
                    continue
                edits.append(mapped)
            qa_edits.apply(session, edits, entry.time)
            for uid in record.get("purged_uids") or []:
                removed = session.remove(Level.IMAGE, uid)
                session.add_pending_deletions([(b, "purged (replayed)") for b in removed.blobs], entry.time, entry.time)
            operation.edits = edits
            assert operation.actor is not None
            session.add_operation(operation, operation.actor, entry.time)
        report.operations += 1

    @staticmethod
    def _patients(session: IndexSession, recorded: dict[str, list[dict[str, str]]]) -> dict[int, int]:
        """Old patient key -> the key of the patient holding the same identifiers now."""
        out = {}
        for old, identifiers in recorded.items():
            for identifier in identifiers:
                wanted = qa_edits.id_from_json(identifier)
                if wanted is None:
                    continue
                found = next(
                    (
                        row.pk
                        for row in session.patients_with_identifier(wanted.value)
                        if any(wanted.same_as(i) for i in session.identifiers(row.pk))
                    ),
                    None,
                )
                if found is not None:
                    out[int(old)] = found
                    break
        return out


def _mapped(edit: Edit, pks: dict[int, int]) -> Edit | None:
    """The edit with the old index's patient keys replaced, or None if a patient is unknown."""

    def patient(value: Any) -> Any:
        return None if value is None else pks.get(int(value))

    target = dict(edit.target)
    old, new = edit.old, edit.new
    if edit.kind is EditKind.CONFLICT:
        return None  # the inbox of the rebuilt index is its own
    if target["level"] == "PATIENT":
        mapped = patient(target["pk"])
        if mapped is None:
            return None
        target["pk"] = mapped
    if edit.kind in (EditKind.STUDY_PATIENT, EditKind.MERGED_INTO):
        old, new = patient(old), patient(new)
        if (edit.old is not None and old is None) or (edit.new is not None and new is None):
            return None
    if edit.kind is EditKind.CREATED and target["level"] == "STUDY":
        for side in (old, new):
            if side is not None:
                mapped = patient(side["patient_pk"])
                if mapped is None:
                    return None
                side["patient_pk"] = mapped
    return Edit(edit.kind, target, old, new, edit.key)


def _present(session: IndexSession, edit: Edit) -> bool:
    """Whether the object an edit names is in the rebuilt index."""
    target, level = edit.target, edit.target["level"]
    if level == "PATIENT" or edit.kind in (EditKind.CREATED, EditKind.ALIAS):
        return True
    if level == "STUDY":
        return session.study(target["uid"]) is not None
    uid = edit.old if edit.kind is EditKind.UID else target["uid"]
    if level == "SERIES":
        return session.series(uid) is not None
    brief = session.instance_brief(uid)
    return brief is not None and brief.moved_to is None
