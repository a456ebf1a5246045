"""Orders, the worklist entries they schedule, and the reports that answer them.

Orders come from HL7 (ORM^O01, OMI^O23; IHE RAD TF-2 4.4 and 4.128) and become requested
procedures and scheduled procedure steps, one worklist item per step (PS3.4 K.6.1). A
change (ORC-1 XO) updates them; a cancel (CA, DC) discontinues their steps. Reports
(ORU^R01) are stored and linked to the order, the requested procedure and through them to
the studies; their result status (OBR-25 P, F, C) becomes the procedure's status
(preliminary, final, amended). ADT^A10 (patient arrived) marks the patient's steps of the
day as arrived. Every change is audited and each status transition is kept with its time
and source.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pydicom.uid import generate_uid

from openpacs.domain.errors import NotFound
from openpacs.domain.hl7_orders import is_cancel
from openpacs.domain.orders import (
    ARRIVED,
    COMPLETED,
    DISCONTINUED,
    ORDER_STATUS_STEP,
    SCHEDULED,
    STEP_PROCEDURE,
    OrderEntry,
    OrderRow,
    ReportEntry,
    ReportRow,
    StepRow,
)
from openpacs.domain.records import Actor
from openpacs.domain.worklist import step_columns, stored_item, worklist_item
from openpacs.ports.index import AuditRecord, Index, IndexSession
from openpacs.services.procedures import advance

_SPS_SEQUENCE, _SPS_STATUS = "00400100", "00400020"
FINAL_STATES = frozenset({"final", "amended"})


def with_step_status(attrs: dict[str, Any], status: str) -> dict[str, Any]:
    """The worklist item with another Scheduled Procedure Step Status."""
    out = copy.deepcopy(attrs)
    items = out.get(_SPS_SEQUENCE, {}).get("Value") or [{}]
    items[0][_SPS_STATUS] = {"vr": "CS", "Value": [status]}
    out[_SPS_SEQUENCE] = {"vr": "SQ", "Value": items}
    return out


class OrderService:
    """Applies orders and results; answers the REST API's questions about them."""

    def __init__(
        self, index: Index, *, clock: Callable[[], datetime], new_uid: Callable[[], str] | None = None
    ) -> None:
        self._index = index
        self._clock = clock
        self._new_uid = new_uid or (lambda: str(generate_uid()))

    # -- orders -----------------------------------------------------------------------------

    def apply_orders(self, entries: Sequence[OrderEntry], actor: Actor, source: str, message_pk: int | None) -> str:
        """Create, change or cancel the orders of one message, in one transaction."""
        now = self._clock()
        notes = []
        with self._index.session(write=True) as session:
            for entry in entries:
                existing = session.orders.find_order(
                    entry.placer_order_number, entry.filler_order_number, entry.accession_number
                )
                if is_cancel(entry):
                    if existing is None:
                        named = entry.placer_order_number or entry.filler_order_number or entry.accession_number
                        raise NotFound(f"no order {named} to cancel")
                    notes.append(self._cancel(session, existing, entry, actor, source, message_pk, now))
                else:
                    notes.append(self._save(session, existing, entry, actor, source, message_pk, now))
        return "; ".join(notes)

    def _save(
        self, session: IndexSession, existing: OrderRow | None, entry: OrderEntry, actor: Actor, source: str,
        message_pk: int | None, now: datetime,
    ) -> str:  # fmt: skip
        store = session.orders
        order_pk = store.save_order(existing.pk if existing else None, entry, actor.id, message_pk, now)
        forced = ORDER_STATUS_STEP.get(entry.status) if existing is not None else None
        steps = 0
        for procedure in entry.procedures:
            known = next(
                (
                    p
                    for p in (existing.procedures if existing else [])
                    if p.requested_procedure_id == procedure.requested_procedure_id
                    and p.accession_number == procedure.accession_number
                ),
                None,
            )
            if not procedure.study_instance_uid:
                procedure.study_instance_uid = known.study_instance_uid if known else self._new_uid()
            procedure_pk = store.save_procedure(known.pk if known else None, order_pk, procedure, now)
            if known is None:
                store.add_status_history(procedure_pk, "scheduled", source, now)
            for step in procedure.steps:
                old = next(
                    (s for s in (known.steps if known else []) if s.scheduled_step_id == step.scheduled_step_id), None
                )
                given = step.status if step.item is not None else ""
                step.status = forced or given or (old.status if old else SCHEDULED)
                columns = step_columns(step, entry.patient.patient_id)
                attrs = stored_item(worklist_item(entry, procedure, step), step.item, step.status)
                store.save_step(old.pk if old else None, procedure_pk, step.scheduled_step_id, step.status, columns,
                                attrs, now)  # fmt: skip
                steps += 1
            if forced is not None:
                self._advance(session, procedure_pk, STEP_PROCEDURE[forced], source, actor, now)
        action = "order-changed" if existing else "order-created"
        session.add_audit(
            [
                AuditRecord(
                    now, actor, action, "success", self._objects(entry),
                    {"order": order_pk, "source": source, "procedures": len(entry.procedures), "steps": steps},
                )
            ]
        )  # fmt: skip
        verb = "changed" if existing else "created"
        return f"order {order_pk} {verb} ({len(entry.procedures)} procedures, {steps} steps)"

    def _cancel(
        self, session: IndexSession, existing: OrderRow, entry: OrderEntry, actor: Actor, source: str,
        message_pk: int | None, now: datetime,
    ) -> str:  # fmt: skip
        store = session.orders
        kept = OrderEntry(
            control=entry.control,
            status=entry.status or entry.control,
            placer_order_number=existing.placer_order_number,
            filler_order_number=existing.filler_order_number,
            patient=entry.patient,
            requesting_physician=existing.requesting_physician,
            department=existing.department,
            priority=existing.priority,
        )
        store.save_order(existing.pk, kept, existing.sender, message_pk, now)
        steps = 0
        for procedure in existing.procedures:
            for step in procedure.steps:
                if step.status not in (COMPLETED, DISCONTINUED):
                    store.set_step_status(step.pk, DISCONTINUED, with_step_status(step.attrs, DISCONTINUED), now)
                    steps += 1
            self._advance(session, procedure.pk, "cancelled", source, actor, now)
        session.add_audit(
            [
                AuditRecord(
                    now, actor, "order-cancelled", "success", self._objects(entry),
                    {"order": existing.pk, "source": source, "control": entry.control, "steps": steps},
                )
            ]
        )  # fmt: skip
        return f"order {existing.pk} cancelled ({steps} steps discontinued)"

    @staticmethod
    def _advance(session: IndexSession, pk: int, status: str, source: str, actor: Actor, now: datetime) -> None:
        procedure = session.orders.procedure(pk)
        if procedure is not None:
            advance(session, procedure, status, source, actor, now)

    @staticmethod
    def _objects(entry: OrderEntry) -> list[dict[str, str]]:
        objects = [{"level": "PATIENT", "uid": entry.patient.patient_id}]
        for procedure in entry.procedures:
            if procedure.accession_number:
                objects.append({"level": "ACCESSION", "uid": procedure.accession_number})
        return objects

    def patient_arrived(self, patient_id: str, issuer: str, date: str, actor: Actor, source: str) -> str:
        """ADT^A10: the patient's scheduled steps of *date* (or with no date) become ARRIVED."""
        now = self._clock()
        with self._index.session(write=True) as session:
            store = session.orders
            steps = [
                s
                for s in store.steps(patient_id=patient_id, statuses=[SCHEDULED])
                if s.start_date in (date, "") and _issuer_of(s) in (issuer, "")
            ]
            for step in steps:
                store.set_step_status(step.pk, ARRIVED, with_step_status(step.attrs, ARRIVED), now)
            for procedure_pk in sorted({s.procedure_pk for s in steps}):
                self._advance(session, procedure_pk, "arrived", source, actor, now)
            if steps:
                session.add_audit(
                    [
                        AuditRecord(
                            now, actor, "patient-arrived", "success", [{"level": "PATIENT", "uid": patient_id}],
                            {"source": source, "steps": [s.pk for s in steps]},
                        )
                    ]
                )  # fmt: skip
        return f"{len(steps)} scheduled steps of {date} marked arrived"

    # -- reports ----------------------------------------------------------------------------

    def add_reports(
        self, entries: Sequence[ReportEntry], actor: Actor, source: str, message_pk: int | None
    ) -> list[ReportRow]:
        """Store the reports and move their procedures to preliminary, final or amended."""
        now = self._clock()
        out = []
        with self._index.session(write=True) as session:
            store = session.orders
            for entry in entries:
                order = store.find_order(entry.placer_order_number, entry.filler_order_number, entry.accession_number)
                procedures = store.procedures_for(
                    entry.accession_number, entry.requested_procedure_id, order.pk if order else None
                )
                studies = list(entry.study_instance_uids)
                for procedure in procedures:
                    if procedure.study_instance_uid and procedure.study_instance_uid not in studies:
                        studies.append(procedure.study_instance_uid)
                entry.study_instance_uids = tuple(studies)
                first = procedures[0].pk if procedures else None
                pk = store.add_report(entry, order.pk if order else None, first, actor.id, message_pk, now)
                for procedure in procedures:
                    status = entry.status
                    if status == "final" and procedure.status in FINAL_STATES:
                        status = "amended"  # a second final report corrects the first
                    changed = status in ("preliminary", "final", "amended") and advance(
                        session, procedure, status, source, actor, now
                    )
                    if not changed and status == "amended":
                        store.add_status_history(procedure.pk, status, source, now)
                    if status in FINAL_STATES:  # read: its studies are no longer anyone's to read
                        linked = {link.study_instance_uid for link in session.workflow.links_of_procedure(procedure.pk)}
                        for uid in sorted(linked | {procedure.study_instance_uid} - {""}):
                            session.reading.release(uid)
                session.add_audit(
                    [
                        AuditRecord(
                            now, actor, "report-received", "success",
                            [{"level": "STUDY", "uid": uid} for uid in studies]
                            or [{"level": "PATIENT", "uid": entry.patient_id}],
                            {"report": pk, "status": entry.status, "accession": entry.accession_number,
                             "source": source, "linked": first is not None},
                        )
                    ]
                )  # fmt: skip
                found = store.report(pk)
                assert found is not None
                out.append(found)
        return out

    def set_report_instance(self, pk: int, sop_instance_uid: str) -> None:
        with self._index.session(write=True) as session:
            session.orders.set_report_instance(pk, sop_instance_uid)

    # -- reading ----------------------------------------------------------------------------

    def orders(self, *, patient_id: str = "", accession: str = "", status: str = "", limit: int = 100,
               before: int | None = None) -> list[OrderRow]:  # fmt: skip
        with self._index.session() as session:
            return session.orders.orders(
                patient_id=patient_id, accession=accession, status=status, limit=limit, before=before
            )

    def order(self, pk: int) -> dict[str, Any]:
        """An order with its procedures, their steps and their status history."""
        with self._index.session() as session:
            found = session.orders.order(pk)
            if found is None:
                raise NotFound(f"no order {pk}")
            out = found.to_json()
            for procedure in out["procedures"]:
                procedure["history"] = session.orders.procedure_history(procedure["id"])
                procedure["reports"] = [
                    r.to_json(with_text=False) for r in session.orders.reports(procedure_pk=procedure["id"])
                ]
        return out

    def worklist(
        self, *, patient_id: str = "", date: str = "", modality: str = "", station_ae_title: str = "",
        statuses: Sequence[str] = (), limit: int = 1000,
    ) -> list[StepRow]:  # fmt: skip
        with self._index.session() as session:
            return session.orders.steps(
                patient_id=patient_id, date=date, modality=modality, station_ae_title=station_ae_title,
                statuses=statuses, limit=limit,
            )  # fmt: skip

    def reports(self, *, accession: str = "", patient_id: str = "", status: str = "", limit: int = 100,
                before: int | None = None) -> list[ReportRow]:  # fmt: skip
        with self._index.session() as session:
            return session.orders.reports(
                accession=accession, patient_id=patient_id, status=status, limit=limit, before=before
            )

    def report(self, pk: int) -> ReportRow:
        with self._index.session() as session:
            found = session.orders.report(pk)
        if found is None:
            raise NotFound(f"no report {pk}")
        return found


def _issuer_of(step: StepRow) -> str:
    value = step.attrs.get("00100021", {}).get("Value") or [""]
    return str(value[0])
