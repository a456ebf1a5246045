"""Requested procedure status and study links, as every workflow source changes them
(IHE RAD TF-1 Scheduled Workflow): one place decides whether a transition is taken
(:func:`openpacs.domain.workflow.may_advance`), records it with its time and source in the
procedure's history, and audits it in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from openpacs.domain.errors import Conflict, InvalidQuery, NotFound
from openpacs.domain.orders import PROCEDURE_STATUSES, ProcedureRow
from openpacs.domain.records import Actor
from openpacs.domain.workflow import may_advance
from openpacs.ports.index import AuditRecord, Index, IndexSession


def advance(
    session: IndexSession, procedure: ProcedureRow, status: str, source: str, actor: Actor, now: datetime,
    *, force: bool = False,
) -> bool:  # fmt: skip
    """Move *procedure* to *status* if the model allows it (or *force*: by hand, backwards too);
    True when it moved."""
    if not force and not may_advance(procedure.status, status):
        return False
    if not session.orders.set_procedure_status(procedure.pk, status, source, now):
        return False
    session.add_audit(
        [
            AuditRecord(
                now,
                actor,
                "procedure-status",
                "success",
                [{"level": "ACCESSION", "uid": procedure.accession_number}]
                + ([{"level": "STUDY", "uid": procedure.study_instance_uid}] if procedure.study_instance_uid else []),
                {"procedure": procedure.pk, "from": procedure.status, "to": status, "source": source}
                | ({"forced": True} if force else {}),
            )
        ]
    )
    procedure.status, procedure.status_at = status, now
    return True


def link(
    session: IndexSession, study_instance_uid: str, procedure: ProcedureRow, linked_by: str, actor: Actor, now: datetime
) -> bool:
    """Link a study to a requested procedure (audited; False when linked already)."""
    if not session.workflow.link_study(study_instance_uid, procedure.pk, linked_by, now):
        return False
    session.add_audit(
        [
            AuditRecord(
                now,
                actor,
                "study-linked",
                "success",
                [
                    {"level": "STUDY", "uid": study_instance_uid},
                    {"level": "ACCESSION", "uid": procedure.accession_number},
                ],
                {"procedure": procedure.pk, "linked_by": linked_by},
            )
        ]
    )
    return True


class ProcedureService:
    """Requested procedures as the REST API shows them: status queries, links, manual changes."""

    def __init__(self, index: Index, *, clock: Callable[[], datetime]) -> None:
        self._index = index
        self._clock = clock

    def procedures(
        self, *, statuses: Sequence[str], older_than: timedelta | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Procedures in *statuses* (all when empty) for longer than *older_than*, oldest first:
        "completed and not read for more than 2 hours" is statuses=["completed"], 2 hours."""
        before = self._clock() - older_than if older_than is not None else None
        with self._index.session() as session:
            found = session.workflow.procedures_with_status(
                list(statuses) or list(PROCEDURE_STATUSES), before=before, limit=limit
            )
            return [self._json(session, p) for p in found]

    def procedure(self, pk: int) -> dict[str, Any]:
        with self._index.session() as session:
            found = session.orders.procedure(pk)
            if found is None:
                raise NotFound(f"no requested procedure {pk}")
            out = self._json(session, found)
            out["history"] = session.orders.procedure_history(pk)
            out["steps"] = [s.to_json() for s in session.workflow.steps_of_procedure(pk)]
            return out

    @staticmethod
    def _json(session: IndexSession, procedure: ProcedureRow) -> dict[str, Any]:
        out = procedure.to_json()
        links = session.workflow.links_of_procedure(procedure.pk)
        out["studies"] = [link.to_json() for link in links]
        uids = [link.study_instance_uid for link in links] or [procedure.study_instance_uid]
        out["reading_worklists"] = sorted({w for uid in uids if uid for w in session.workflow.assignments(uid)})
        return out

    def link(self, pk: int, study_instance_uid: str, actor: Actor) -> dict[str, Any]:
        """Link a study to a procedure by hand (``manual``)."""
        now = self._clock()
        with self._index.session(write=True) as session:
            found = session.orders.procedure(pk)
            if found is None:
                raise NotFound(f"no requested procedure {pk}")
            if session.study(study_instance_uid) is None:
                raise NotFound(f"no study {study_instance_uid}")
            link(session, study_instance_uid, found, "manual", actor, now)
        return self.procedure(pk)

    def unlink(self, pk: int, study_instance_uid: str, actor: Actor) -> dict[str, Any]:
        now = self._clock()
        with self._index.session(write=True) as session:
            found = session.orders.procedure(pk)
            if found is None or not session.workflow.unlink_study(study_instance_uid, pk):
                raise NotFound(f"study {study_instance_uid} is not linked to procedure {pk}")
            session.add_audit(
                [
                    AuditRecord(
                        now, actor, "study-unlinked", "success", [{"level": "STUDY", "uid": study_instance_uid}],
                        {"procedure": pk},
                    )
                ]
            )  # fmt: skip
        return self.procedure(pk)

    def set_status(self, pk: int, status: str, actor: Actor, *, force: bool = False) -> dict[str, Any]:
        """Set a procedure's status by hand; backwards only with *force* (audited either way)."""
        if status not in PROCEDURE_STATUSES:
            raise InvalidQuery(f"status must be one of {', '.join(PROCEDURE_STATUSES)}")
        now = self._clock()
        with self._index.session(write=True) as session:
            found = session.orders.procedure(pk)
            if found is None:
                raise NotFound(f"no requested procedure {pk}")
            source = f"manual {actor.id}"[:64]
            moved = advance(session, found, status, source, actor, now, force=force)
            if not moved and not force and found.status != status:
                raise Conflict(f"procedure {pk} is {found.status}: it cannot become {status} (force to override)")
        return self.procedure(pk)
