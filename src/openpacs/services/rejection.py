"""Rejection (IHE IOCM), soft delete, restore and purge: instances hidden from clinical
users and shown again, as reversible operations; purge is final.

PS3.3 A.35.4 and IHE RAD TF-1 IOCM: a rejection stores a rejection note (a Key Object
Selection titled with a CID 7011 code) in the study, for peers; the instances leave
every query and retrieval. ``domain/qa.py`` REJECTION_CODES says what each code does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from openpacs.domain.errors import Conflict, InvalidQuery, NotFound
from openpacs.domain.qa import DELETED, DERIVED, NOTE, REJECTION_CODES, Edit, EditKind, Operation, OperationKind
from openpacs.domain.records import Actor, Origin
from openpacs.domain.tags import Level
from openpacs.domain.workflow import committed_refusal
from openpacs.ports.index import ChangeRecord, IndexSession, InstanceState
from openpacs.services import journal
from openpacs.services.iocm import REJECTION_TRANSPORT, rejection_note
from openpacs.services.qa_runner import NOUN, QaRunner

log = logging.getLogger(__name__)


class RejectionOps(QaRunner):
    """reject, delete, restore, purge and the administrators' view of hidden instances."""

    def reject(
        self,
        level: Level,
        uid: str,
        code: str,
        actor: Actor,
        reason: str,
        *,
        dry_run: bool = False,
        resolves: Sequence[int] = (),
    ) -> Operation:
        """Reject a study, series or instance (IOCM): its instances leave every query and
        retrieval, and a rejection note (a Key Object Selection titled with *code*) is stored
        in the study, for peers. Undo shows them again and hides the note."""
        rejection = REJECTION_CODES.get(code)
        if rejection is None:
            raise InvalidQuery(f"rejection code {code!r} is not one of {', '.join(REJECTION_CODES)} (CID 7011)")
        if not reason.strip():
            raise InvalidQuery("a reason is required")
        visible = self._visible(level, uid)
        note: tuple[str, bytes] | None = None
        if not dry_run:
            note = rejection_note(visible, rejection, self._clock())
            self._ingest.store(note[1], Origin(actor=actor, transport=REJECTION_TRANSPORT, calling_ae=""))

        def plan(session: IndexSession) -> Operation:
            states = session.instance_states(level, uid)
            edits = self._hide_edits(states, level, uid, None, code, skip=note[0] if note else None)
            if note is not None:
                # like dcm4chee's, our rejection notes are for peers, not for clinical users:
                # hidden in the operation's transaction (undo leaves it: copies may have left)
                session.set_hidden([note[0]], NOTE, self._clock())
            summary = self._hide_summary(states, level, uid, edits, "rejected", code)
            summary["rejection_note"] = note[0] if note else "a Key Object Selection would be stored in the study"
            params = {"level": str(level), "uid": uid, "code": code}
            return Operation(OperationKind.REJECT, reason, params, edits, summary)

        try:
            return self._run(plan, actor, dry_run, resolves)
        except BaseException:
            if note is not None:
                self._withdraw(note[0])
            raise

    def delete(
        self, level: Level, uid: str, actor: Actor, reason: str, *, dry_run: bool = False, force: bool = False
    ) -> Operation:
        """Soft-delete a study, series or instance: hidden like a rejection, restorable
        (``restore`` or undo); the files stay until a purge. Instances we committed to
        (storage commitment) need *force*: reject them instead (Conflict otherwise)."""
        self._visible(level, uid)

        def plan(session: IndexSession) -> Operation:
            states = session.instance_states(level, uid)
            committed = session.workflow.committed_to([s.sop_instance_uid for s in states if s.hidden is None])
            if committed and not force:
                raise Conflict(committed_refusal(committed, NOUN[level]))
            edits = self._hide_edits(states, level, uid, None, DELETED)
            summary = self._hide_summary(states, level, uid, edits, "deleted", DELETED)
            return Operation(OperationKind.DELETE, reason, {"level": str(level), "uid": uid}, edits, summary)

        return self._run(plan, actor, dry_run)

    def restore(self, level: Level, uid: str, actor: Actor, reason: str, *, dry_run: bool = False) -> Operation:
        """Show again the rejected or soft-deleted instances of a study, series or instance.
        Rejection notes already stored (and perhaps sent to peers) stay: they are listed."""

        def plan(session: IndexSession) -> Operation:
            states = session.instance_states(level, uid)
            if not states:
                raise NotFound(f"no {NOUN[level]} {uid}")
            notes = [s.sop_instance_uid for s in states if s.hidden == NOTE]
            edits = [
                Edit(EditKind.HIDDEN, {"level": "IMAGE", "uid": s.sop_instance_uid}, s.hidden, None)
                for s in states
                if s.hidden not in (None, NOTE, DERIVED)
            ]
            if not edits:
                raise InvalidQuery(f"nothing of {uid} is rejected or deleted")
            summary = self._hide_summary(states, level, uid, edits, "restored", None)
            summary["rejection_notes_kept"] = notes
            return Operation(OperationKind.RESTORE, reason, {"level": str(level), "uid": uid}, edits, summary)

        return self._run(plan, actor, dry_run)

    def purge(self, actor: Actor, reason: str, *, dry_run: bool = False, limit: int = 100_000) -> Operation:
        """Remove for good the rejected and soft-deleted instances hidden for longer than
        ``qa.purge_after_days`` (113039, Data Retention Policy Expired, at once): their index
        rows go now, their files after ``storage.deletion_grace_seconds``. Final: no undo."""
        if not reason.strip():
            raise InvalidQuery("a reason is required")
        now = self._clock()
        with self._journaled() as written, self._index.session(write=not dry_run) as session:
            due = session.hidden_before(
                [c for c in REJECTION_CODES if c != "113039"] + [DELETED], now - self._purge_after, limit
            )
            due += session.hidden_before(["113039"], now, limit)
            summary: dict[str, Any] = {
                "level": "IMAGE",
                "name": f"{len(due)} instances",
                "affected": {
                    "studies": len({s.study_instance_uid for s in due}),
                    "series": len({s.series_instance_uid for s in due}),
                    "instances": len(due),
                },
                "purged": [{"sop_instance_uid": s.sop_instance_uid, "hidden": s.hidden} for s in due[:1000]],
            }
            operation = Operation(
                OperationKind.PURGE, reason, {"purge_after_days": self._purge_after.days}, [], summary
            )
            if dry_run:
                return operation
            blobs = []
            for state in due:
                removed = session.remove(Level.IMAGE, state.sop_instance_uid)
                blobs.extend(removed.blobs)
            session.add_pending_deletions([(b, "purged") for b in blobs], now + self._deletion_grace, now)
            operation.id = session.add_operation(operation, actor, now)
            operation.actor, operation.created_at = actor, now
            session.add_changes([ChangeRecord("instance_deleted", Level.IMAGE, s.sop_instance_uid) for s in due], now)
            record = self._audit(operation, actor, now)
            record.resources.extend({"level": "IMAGE", "uid": s.sop_instance_uid} for s in due[:100])
            session.add_audit([record])
            purged = [s.sop_instance_uid for s in due]
            written.append(journal.write(self._blobs, operation, now, patients={}, purged_uids=purged))
        log.info("purge %d by %s removed %d instances: %s", operation.id, actor.id, len(due), reason)
        return operation

    def hidden(self, level: Level, uid: str) -> list[dict[str, Any]]:
        """What administrators see and clinical users do not: the hidden instances of a study,
        series or instance, with why (a rejection code, "deleted", "rejection-note", or "derived":
        a lossy copy a routing rule made)."""
        with self._index.session() as session:
            states = session.instance_states(level, uid)
        if not states:
            raise NotFound(f"no {NOUN[level]} {uid}")
        return [
            {
                "sop_instance_uid": s.sop_instance_uid,
                "sop_class_uid": s.sop_class_uid,
                "series_instance_uid": s.series_instance_uid,
                "study_instance_uid": s.study_instance_uid,
                "hidden": s.hidden,
                "meaning": REJECTION_CODES[s.hidden].meaning
                if s.hidden in REJECTION_CODES
                else "lossy copy made for routing"
                if s.hidden == DERIVED
                else s.hidden,
            }
            for s in states
            if s.hidden is not None
        ]

    @staticmethod
    def _hide_edits(
        states: list[InstanceState], level: Level, uid: str, old: str | None, new: str, skip: str | None = None
    ) -> list[Edit]:
        edits = [
            Edit(EditKind.HIDDEN, {"level": "IMAGE", "uid": s.sop_instance_uid}, old, new)
            for s in states
            if s.hidden == old and s.sop_instance_uid != skip
        ]
        if not edits:
            raise NotFound(f"no visible {NOUN[level]} {uid}")
        return edits

    @staticmethod
    def _hide_summary(
        states: list[InstanceState], level: Level, uid: str, edits: list[Edit], verb: str, state: str | None
    ) -> dict[str, Any]:
        by_uid = {s.sop_instance_uid: s for s in states}
        touched = [by_uid[e.target["uid"]] for e in edits if e.target["uid"] in by_uid]
        return {
            "level": str(level),
            "name": uid,
            "affected": {
                "studies": len({s.study_instance_uid for s in touched}),
                "series": len({s.series_instance_uid for s in touched}),
                "instances": len(touched),
            },
            "changes": [{"object": f"{level}:{uid}", verb: len(touched), "state": state}],
        }
