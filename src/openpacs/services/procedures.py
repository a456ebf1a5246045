"""Requested procedure status and study links, as every workflow source changes them
(IHE RAD TF-1 Scheduled Workflow): one place decides whether a transition is taken
(:func:`openpacs.domain.workflow.may_advance`), records it with its time and source in the
procedure's history, and audits it in the same transaction.
"""

from __future__ import annotations

from datetime import datetime

from openpacs.domain.orders import ProcedureRow
from openpacs.domain.records import Actor
from openpacs.domain.workflow import may_advance
from openpacs.ports.index import AuditRecord, IndexSession


def advance(
    session: IndexSession, procedure: ProcedureRow, status: str, source: str, actor: Actor, now: datetime
) -> bool:
    """Move *procedure* to *status* if the model allows it; True when it moved."""
    if not may_advance(procedure.status, status):
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
                {"procedure": procedure.pk, "from": procedure.status, "to": status, "source": source},
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
