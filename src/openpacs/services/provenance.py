"""Where identity values come from, and what already left the archive.

Precedence (issue 4, ARCHITECTURE.md section 3): the HIS owns identity. An ADT message
(an operation with source ``hl7``) sets the values it carries whatever earlier local
edits set; a local edit (source ``local``) is marked as such in the operations table and
the audit, and :func:`patient_provenance` tells, attribute by attribute, which operation
set the value a patient holds now. An undo cannot take back what a later ADT set (the
later operation holds the objects), and an ADT operation is undone only with an override.

An undo changes the archive, not the copies that left it: :func:`left_the_archive`
lists the retrievals (C-MOVE, C-GET, WADO-RS) of the objects since the operation and
the rejection notes it stored, so that the administrator can tell the recipients.
"""

from __future__ import annotations

from typing import Any

from openpacs.domain.qa import EditKind, Operation
from openpacs.domain.tags import keyword_of
from openpacs.ports.index import IndexSession

RETRIEVALS = ("move", "get", "wado-retrieve", "forward-sent")  # copies that left the archive


def patient_provenance(session: IndexSession, patient_pk: int) -> dict[str, dict[str, Any]]:
    """Keyword -> the operation that set the patient's current value (source, id, when, who);
    attributes no operation in force has set came with the objects (source ``object``)."""
    out: dict[str, dict[str, Any]] = {}
    patient = session.patient(patient_pk)
    for key in patient.attrs:
        out[keyword_of(int(key, 16)) or key] = {"source": "object"}
    for op_id in session.later_operations([f"PATIENT:{patient_pk}"], 0):
        operation = session.operation(op_id)
        if operation is None:
            continue
        for edit in operation.edits:
            if edit.kind is not EditKind.ATTRIBUTE or edit.target.get("pk") != patient_pk:
                continue
            out[keyword_of(int(edit.key, 16)) or edit.key] = {
                "source": operation.source,
                "operation": operation.id,
                "kind": str(operation.kind),
                "at": None if operation.created_at is None else operation.created_at.isoformat(),
                "actor": None if operation.actor is None else operation.actor.id,
            }
    return dict(sorted(out.items()))


def left_the_archive(session: IndexSession, operation: Operation) -> dict[str, Any]:
    """What of the operation's objects was sent since it ran, and the notes it stored."""
    uids: set[str] = set()
    for key in operation.objects():
        level, _, name = key.partition(":")
        if level == "PATIENT":
            uids.update(session.study_uids_of(int(name)))
        elif level in ("STUDY", "SERIES", "IMAGE"):
            uids.add(name)
    sent = []
    if operation.created_at is not None and uids:
        for record in session.audit_since(RETRIEVALS, operation.created_at, 5000):
            if any(r.get("uid") in uids for r in record["resources"] or []):
                details = record["details"] or {}
                sent.append(
                    {
                        "time": record["time"].isoformat(),
                        "action": record["action"],
                        "by": record["actor_id"],
                        "destination": details.get("destination", ""),
                        "instances": details.get("completed", details.get("instances")),
                    }
                )
    summary = operation.summary
    notes = [summary["rejection_note"]] if isinstance(summary.get("rejection_note"), str) else []
    notes += [n["sop_instance_uid"] for n in summary.get("rejection_notes") or [] if isinstance(n, dict)]
    return {
        "retrievals": sent[:100],
        "retrieval_count": len(sent),
        "rejection_notes": [n for n in notes if n],
        "note": "copies sent since the operation keep what they were sent with: they are not recalled",
    }
