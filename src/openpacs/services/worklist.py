"""The modality worklist: answering worklist queries (PS3.4 K, Modality Worklist Information
Model - FIND) and the entries a PACS administrator adds, changes, cancels or imports.

Entries are scheduled procedure steps (see :mod:`openpacs.services.orders`): HL7 orders make
them, and so do the REST API (``/api/worklist``) and ``openpacs worklist import`` from DICOM
worklist files, each through :meth:`OrderService.apply_orders`. An entry leaves the worklist
once its step is completed or discontinued, and ``workflow.worklist_retention_days`` after its
scheduled date.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Sequence
from datetime import datetime, timedelta
from typing import Any

from openpacs.domain.errors import InvalidInstance, NotFound
from openpacs.domain.orders import COMPLETED, DISCONTINUED, STEP_STATUSES, OrderEntry, StepRow
from openpacs.domain.records import Actor
from openpacs.domain.worklist import checked_item, entry_from_item, step_columns, stored_item
from openpacs.domain.worklist_query import WorklistQuery, parse_worklist_query
from openpacs.ports.index import AuditRecord, Index
from openpacs.services.orders import OrderService

#: Steps in these states are no longer on the worklist (PS3.3 C.4.10.1)
CLOSED = (COMPLETED, DISCONTINUED)


class WorklistService:
    """Answers worklist queries and manages entries; thread-safe."""

    def __init__(
        self,
        index: Index,
        orders: OrderService,
        *,
        clock: Callable[[], datetime],
        retention_days: int = 30,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self._index = index
        self._orders = orders
        self._clock = clock
        self._retention_days = retention_days
        counter = itertools.count(1)
        self._new_id = new_id or (lambda: f"{clock():%y%m%d%H%M%S}{next(counter) % 1000:03d}")

    # -- queries ------------------------------------------------------------------------------

    def parse(self, identifier: dict[str, Any]) -> WorklistQuery:
        """A worklist C-FIND identifier as a query (InvalidQuery, A900, when malformed)."""
        return parse_worklist_query(identifier)

    def find(self, query: WorklistQuery) -> Generator[dict[str, Any]]:
        """The answers, scheduled date and time order (the index selects, then each item is
        matched in full)."""
        not_before = ""
        if self._retention_days:
            not_before = f"{self._clock() - timedelta(days=self._retention_days):%Y%m%d}"
        with self._index.session() as session:
            items = session.orders.worklist_items(query.prefilter, excluded_statuses=CLOSED, not_before=not_before)
        for item in items:
            if query.matches(item):
                yield query.answer(item)

    # -- entries ------------------------------------------------------------------------------

    def create(self, item: dict[str, Any], actor: Actor, source: str = "rest") -> list[StepRow]:
        """Add (or, for a known order and step, change) the entry an item describes; the
        stored steps of its order."""
        entry = entry_from_item(checked_item(item), default_step_id=self._new_id(), default_procedure_id=self._new_id())
        self._orders.apply_orders([entry], actor, source, None)
        with self._index.session() as session:
            found = session.orders.find_order(
                entry.placer_order_number, entry.filler_order_number, entry.accession_number
            )
        steps = [s for p in (found.procedures if found else []) for s in p.steps]
        wanted = entry.procedures[0].steps[0].scheduled_step_id
        return [s for s in steps if s.scheduled_step_id == wanted] or steps

    def import_items(self, items: Sequence[tuple[str, dict[str, Any]]], actor: Actor, *, batch: int = 500) -> list[str]:
        """Import worklist items (name, DICOM JSON): a line per item saying what was done or why
        it was refused. Items are checked one by one, then applied *batch* to a transaction (an
        entry of the same order and step is updated)."""
        notes = []
        entries: list[tuple[str, OrderEntry]] = []
        for name, item in items:
            try:
                entry = entry_from_item(item, default_step_id=self._new_id(), default_procedure_id=self._new_id())
            except InvalidInstance as exc:
                notes.append(f"{name}: refused: {exc.reason}")
                continue
            entries.append((name, entry))
        for start in range(0, len(entries), batch):
            chunk = entries[start : start + batch]
            self._orders.apply_orders([e for _, e in chunk], actor, "worklist import", None)
            for name, entry in chunk:
                step = entry.procedures[0].steps[0]
                notes.append(f"{name}: entry {step.scheduled_step_id} (accession {entry.accession_number or '-'})")
        return notes

    def entry(self, pk: int) -> StepRow:
        with self._index.session() as session:
            found = session.orders.step(pk)
        if found is None:
            raise NotFound(f"no worklist entry {pk}")
        return found

    def update(self, pk: int, item: dict[str, Any], actor: Actor) -> StepRow:
        """Replace entry *pk*'s item (its status too, if the item gives one)."""
        current = self.entry(pk)
        item = checked_item(item)
        entry = entry_from_item(
            item, default_step_id=current.scheduled_step_id, default_procedure_id=current.scheduled_step_id
        )
        step = entry.procedures[0].steps[0]
        if step.scheduled_step_id != current.scheduled_step_id:
            raise InvalidInstance("the Scheduled Procedure Step ID of an entry cannot change")
        now = self._clock()
        with self._index.session(write=True) as session:
            attrs = stored_item(current.attrs, item, step.status)
            columns = step_columns(step, entry.patient.patient_id)
            session.orders.save_step(pk, current.procedure_pk, step.scheduled_step_id, step.status, columns,
                                     attrs, now)  # fmt: skip
            session.add_audit([self._audit(now, actor, "worklist-entry-changed", pk, attrs)])
        return self.entry(pk)

    def set_status(self, pk: int, status: str, actor: Actor) -> StepRow:
        """Set entry *pk*'s Scheduled Procedure Step Status (DISCONTINUED cancels it)."""
        status = status.strip().upper()
        if status not in STEP_STATUSES:
            raise InvalidInstance(f"unknown Scheduled Procedure Step Status {status!r}")
        current = self.entry(pk)
        now = self._clock()
        with self._index.session(write=True) as session:
            attrs = stored_item(current.attrs, None, status)
            session.orders.set_step_status(pk, status, attrs, now)
            action = "worklist-entry-cancelled" if status == DISCONTINUED else "worklist-entry-changed"
            session.add_audit([self._audit(now, actor, action, pk, attrs)])
        return self.entry(pk)

    @staticmethod
    def _audit(now: datetime, actor: Actor, action: str, pk: int, attrs: dict[str, Any]) -> AuditRecord:
        patient = (attrs.get("00100020", {}).get("Value") or [""])[0]
        return AuditRecord(now, actor, action, "success", [{"level": "PATIENT", "uid": str(patient)}], {"entry": pk})
