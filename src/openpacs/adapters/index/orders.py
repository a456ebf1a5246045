"""Index statements of orders, requested procedures, scheduled steps (the worklist) and
reports (tables ``imaging_order``, ``requested_procedure``, ``scheduled_step``,
``procedure_status``, ``report``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openpacs.adapters.index import tables as t
from openpacs.adapters.index.fast import aware
from openpacs.domain.orders import (
    Code,
    OrderEntry,
    OrderRow,
    ProcedureEntry,
    ProcedureRow,
    ReportEntry,
    ReportRow,
    StepRow,
)
from openpacs.domain.worklist_query import Prefilter


def _step(row: Any, order_pk: int) -> StepRow:
    return StepRow(
        pk=int(row.pk),
        procedure_pk=int(row.procedure_pk),
        order_pk=order_pk,
        scheduled_step_id=row.scheduled_step_id,
        status=row.status,
        modality=row.modality,
        station_ae_titles=tuple(v for v in row.station_ae_title.split("\\") if v),
        start_date=row.start_date,
        start_time=row.start_time,
        attrs=dict(row.attrs),
        updated_at=aware(row.updated_at),
    )


def _procedure(row: Any) -> ProcedureRow:
    return ProcedureRow(
        pk=int(row.pk),
        order_pk=int(row.order_pk),
        requested_procedure_id=row.requested_procedure_id,
        accession_number=row.accession_number,
        study_instance_uid=row.study_instance_uid,
        description=row.description,
        code=Code.from_json(row.code),
        priority=row.priority,
        status=row.status,
        status_at=aware(row.status_at),
    )


def _order(row: Any) -> OrderRow:
    return OrderRow(
        pk=int(row.pk),
        placer_order_number=row.placer_order_number,
        filler_order_number=row.filler_order_number,
        accession_number=row.accession_number,
        patient_id=row.patient_id,
        issuer_of_patient_id=row.issuer_of_patient_id,
        patient_name=row.patient_name,
        sender=row.sender,
        status=row.status,
        priority=row.priority,
        department=row.department,
        requesting_physician=row.requesting_physician,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
        message_pk=None if row.message_pk is None else int(row.message_pk),
    )


def _report(row: Any) -> ReportRow:
    entry = ReportEntry(
        placer_order_number=row.placer_order_number,
        filler_order_number=row.filler_order_number,
        accession_number=row.accession_number,
        requested_procedure_id=row.requested_procedure_id,
        patient_id=row.patient_id,
        issuer_of_patient_id=row.issuer_of_patient_id,
        result_status=row.result_status,
        status=row.status,
        observed_at=row.observed_at,
        text=row.text,
        content_type=row.content_type,
        content=bytes(row.content),
        study_instance_uids=tuple(row.study_instance_uids or ()),
        verifier=row.verifier,
    )
    return ReportRow(
        pk=int(row.pk),
        entry=entry,
        order_pk=None if row.order_pk is None else int(row.order_pk),
        procedure_pk=None if row.procedure_pk is None else int(row.procedure_pk),
        sender=row.sender,
        message_pk=None if row.message_pk is None else int(row.message_pk),
        received_at=aware(row.received_at),
        sop_instance_uid=row.sop_instance_uid,
    )


def multi_value_has(column: Any, value: str) -> Any:
    """The backslash-joined column holds *value* (LIKE patterns escaped with "/")."""
    escaped = value.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return sa.or_(
        column == value,
        column.like(f"{escaped}\\%", escape="/"),
        column.like(f"%\\{escaped}", escape="/"),
        column.like(f"%\\{escaped}\\%", escape="/"),
    )


class OrderTable:
    """The OrderStore port over one connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- orders -----------------------------------------------------------------------------

    def find_order(self, placer: str, filler: str, accession: str) -> OrderRow | None:
        """The order with this placer or filler order number (else this accession number)."""
        o = t.imaging_order
        for column, value in (
            (o.c.filler_order_number, filler),
            (o.c.placer_order_number, placer),
            (o.c.accession_number, accession),
        ):
            if value:
                row = self.connection.execute(
                    sa.select(o).where(column == value).order_by(o.c.pk.desc()).limit(1)
                ).first()
                if row is not None:
                    return self._loaded(_order(row))
        return None

    def order(self, pk: int) -> OrderRow | None:
        o = t.imaging_order
        row = self.connection.execute(sa.select(o).where(o.c.pk == pk)).first()
        return None if row is None else self._loaded(_order(row))

    def orders(
        self, *, patient_id: str = "", accession: str = "", status: str = "", limit: int = 100,
        before: int | None = None,
    ) -> list[OrderRow]:  # fmt: skip
        o, p = t.imaging_order, t.requested_procedure
        select = sa.select(o)
        if patient_id:
            select = select.where(o.c.patient_id == patient_id)
        if accession:
            select = select.where(
                sa.or_(
                    o.c.accession_number == accession,
                    o.c.pk.in_(sa.select(p.c.order_pk).where(p.c.accession_number == accession)),
                )
            )
        if status:
            select = select.where(o.c.pk.in_(sa.select(p.c.order_pk).where(p.c.status == status)))
        if before is not None:
            select = select.where(o.c.pk < before)
        rows = self.connection.execute(select.order_by(o.c.pk.desc()).limit(max(1, min(limit, 1000))))
        return [self._loaded(_order(r)) for r in rows]

    def _loaded(self, order: OrderRow) -> OrderRow:
        p, s = t.requested_procedure, t.scheduled_step
        procedures = [
            _procedure(r)
            for r in self.connection.execute(sa.select(p).where(p.c.order_pk == order.pk).order_by(p.c.pk))
        ]
        if procedures:
            steps = self.connection.execute(
                sa.select(s).where(s.c.procedure_pk.in_([x.pk for x in procedures])).order_by(s.c.pk)
            )
            by_procedure = {x.pk: x for x in procedures}
            for row in steps:
                by_procedure[int(row.procedure_pk)].steps.append(_step(row, order.pk))
        order.procedures = procedures
        return order

    def save_order(self, pk: int | None, entry: OrderEntry, sender: str, message_pk: int | None, now: datetime) -> int:
        """Create the order (pk None) or update its own fields; returns its pk."""
        o = t.imaging_order
        values = {
            "placer_order_number": entry.placer_order_number[:64],
            "filler_order_number": entry.filler_order_number[:64],
            "accession_number": entry.accession_number[:64],
            "patient_id": entry.patient.patient_id[:64],
            "issuer_of_patient_id": entry.patient.issuer[:64],
            "patient_name": entry.patient.name[:200],
            "sender": sender[:200],
            "status": entry.status[:8],
            "priority": entry.priority,
            "department": entry.department[:200],
            "requesting_physician": entry.requesting_physician[:200],
            "updated_at": now,
            "message_pk": message_pk,
        }
        if pk is None:
            return int(
                self.connection.execute(sa.insert(o).values(created_at=now, **values).returning(o.c.pk)).scalar_one()
            )
        self.connection.execute(sa.update(o).where(o.c.pk == pk).values(values))
        return pk

    def save_procedure(self, pk: int | None, order_pk: int, entry: ProcedureEntry, now: datetime) -> int:
        """Create a requested procedure (status scheduled) or update its fields (status kept)."""
        p = t.requested_procedure
        values = {
            "requested_procedure_id": entry.requested_procedure_id[:64],
            "accession_number": entry.accession_number[:64],
            "study_instance_uid": entry.study_instance_uid,
            "description": entry.description[:200],
            "code": entry.code.to_json() if entry.code else None,
            "priority": entry.priority,
        }
        if pk is None:
            return int(
                self.connection.execute(
                    sa.insert(p)
                    .values(order_pk=order_pk, status="scheduled", status_at=now, **values)
                    .returning(p.c.pk)
                ).scalar_one()
            )
        self.connection.execute(sa.update(p).where(p.c.pk == pk).values(values))
        return pk

    def save_step(
        self, pk: int | None, procedure_pk: int, step_id: str, status: str, columns: dict[str, str],
        attrs: dict[str, Any], now: datetime,
    ) -> int:  # fmt: skip
        s = t.scheduled_step
        values = {"scheduled_step_id": step_id[:64], "status": status, "attrs": attrs, "updated_at": now, **columns}
        if pk is None:
            return int(
                self.connection.execute(
                    sa.insert(s).values(procedure_pk=procedure_pk, **values).returning(s.c.pk)
                ).scalar_one()
            )
        self.connection.execute(sa.update(s).where(s.c.pk == pk).values(values))
        return pk

    def set_procedure_status(self, pk: int, status: str, source: str, now: datetime) -> bool:
        """Record a transition (False when the procedure already has that status)."""
        p, h = t.requested_procedure, t.procedure_status
        current = self.connection.execute(sa.select(p.c.status).where(p.c.pk == pk)).scalar_one_or_none()
        if current is None or current == status:
            return False
        self.connection.execute(sa.update(p).where(p.c.pk == pk).values(status=status, status_at=now))
        self.connection.execute(sa.insert(h).values(procedure_pk=pk, status=status, at=now, source=source[:64]))
        return True

    def add_status_history(self, pk: int, status: str, source: str, now: datetime) -> None:
        self.connection.execute(
            sa.insert(t.procedure_status).values(procedure_pk=pk, status=status, at=now, source=source[:64])
        )

    def procedure_history(self, pk: int) -> list[dict[str, Any]]:
        h = t.procedure_status
        rows = self.connection.execute(sa.select(h).where(h.c.procedure_pk == pk).order_by(h.c.pk))
        return [{"status": r.status, "at": aware(r.at).isoformat(), "source": r.source} for r in rows]

    def procedure(self, pk: int) -> ProcedureRow | None:
        p = t.requested_procedure
        row = self.connection.execute(sa.select(p).where(p.c.pk == pk)).first()
        return None if row is None else _procedure(row)

    def procedures_for(self, accession: str, requested_procedure_id: str, order_pk: int | None) -> list[ProcedureRow]:
        """The procedures a result names: by order, accession number and procedure ID, the
        narrowest match first."""
        p = t.requested_procedure
        select = sa.select(p)
        if order_pk is not None:
            select = select.where(p.c.order_pk == order_pk)
        elif accession:
            select = select.where(p.c.accession_number == accession)
        else:
            return []
        rows = [_procedure(r) for r in self.connection.execute(select.order_by(p.c.pk))]
        if accession and order_pk is not None:
            rows = [r for r in rows if r.accession_number in (accession, "")] or rows
        if requested_procedure_id:
            rows = [r for r in rows if r.requested_procedure_id == requested_procedure_id] or rows
        return rows

    # -- the worklist -----------------------------------------------------------------------

    def steps(
        self, *, patient_id: str = "", date: str = "", modality: str = "", station_ae_title: str = "",
        statuses: Sequence[str] = (), limit: int = 1000,
    ) -> list[StepRow]:  # fmt: skip
        s, p = t.scheduled_step, t.requested_procedure
        select = sa.select(s, p.c.order_pk).join(p, p.c.pk == s.c.procedure_pk)
        if patient_id:
            select = select.where(s.c.patient_id == patient_id)
        if date:
            select = select.where(s.c.start_date == date)
        if modality:
            select = select.where(s.c.modality == modality.upper())
        if station_ae_title:
            select = select.where(multi_value_has(s.c.station_ae_title, station_ae_title))
        if statuses:
            select = select.where(s.c.status.in_(list(statuses)))
        rows = self.connection.execute(
            select.order_by(s.c.start_date, s.c.start_time, s.c.pk).limit(max(1, min(limit, 10000)))
        )
        return [_step(r, int(r.order_pk)) for r in rows]

    def worklist_items(
        self, prefilter: Prefilter, *, excluded_statuses: Sequence[str], not_before: str
    ) -> list[dict[str, Any]]:
        """The worklist items the prefilter selects (PS3.4 K.6.1), without those of excluded
        statuses or scheduled before *not_before* (DA; empty: no limit)."""
        s = t.scheduled_step
        select = sa.select(s.c.attrs)
        if prefilter.patient_ids:
            select = select.where(s.c.patient_id.in_(prefilter.patient_ids))
        if prefilter.modalities:
            select = select.where(s.c.modality.in_(prefilter.modalities))
        if prefilter.date_low:
            select = select.where(s.c.start_date >= prefilter.date_low)
        if prefilter.date_high:
            select = select.where(s.c.start_date <= prefilter.date_high)
        if prefilter.station_ae_titles:
            select = select.where(
                sa.or_(*(multi_value_has(s.c.station_ae_title, a) for a in prefilter.station_ae_titles))
            )
        if excluded_statuses:
            select = select.where(s.c.status.not_in(list(excluded_statuses)))
        if not_before:
            select = select.where(sa.or_(s.c.start_date >= not_before, s.c.start_date == ""))
        rows = self.connection.execute(select.order_by(s.c.start_date, s.c.start_time, s.c.pk))
        return [dict(r.attrs) for r in rows]

    def step(self, pk: int) -> StepRow | None:
        s, p = t.scheduled_step, t.requested_procedure
        row = self.connection.execute(
            sa.select(s, p.c.order_pk).join(p, p.c.pk == s.c.procedure_pk).where(s.c.pk == pk)
        ).first()
        return None if row is None else _step(row, int(row.order_pk))

    def set_step_status(self, pk: int, status: str, attrs: dict[str, Any], now: datetime) -> None:
        s = t.scheduled_step
        self.connection.execute(sa.update(s).where(s.c.pk == pk).values(status=status, attrs=attrs, updated_at=now))

    # -- reports ----------------------------------------------------------------------------

    def add_report(
        self, entry: ReportEntry, order_pk: int | None, procedure_pk: int | None, sender: str,
        message_pk: int | None, now: datetime,
    ) -> int:  # fmt: skip
        r = t.report
        return int(
            self.connection.execute(
                sa.insert(r)
                .values(
                    order_pk=order_pk,
                    procedure_pk=procedure_pk,
                    placer_order_number=entry.placer_order_number[:64],
                    filler_order_number=entry.filler_order_number[:64],
                    accession_number=entry.accession_number[:64],
                    requested_procedure_id=entry.requested_procedure_id[:64],
                    patient_id=entry.patient_id[:64],
                    issuer_of_patient_id=entry.issuer_of_patient_id[:64],
                    result_status=entry.result_status[:4],
                    status=entry.status[:16],
                    observed_at=entry.observed_at[:26],
                    study_instance_uids=list(entry.study_instance_uids),
                    verifier=entry.verifier[:200],
                    text=entry.text,
                    content_type=entry.content_type[:100],
                    content=entry.content,
                    sender=sender[:200],
                    message_pk=message_pk,
                    received_at=now,
                )
                .returning(r.c.pk)
            ).scalar_one()
        )

    def set_report_instance(self, pk: int, sop_instance_uid: str) -> None:
        r = t.report
        self.connection.execute(sa.update(r).where(r.c.pk == pk).values(sop_instance_uid=sop_instance_uid))

    def report(self, pk: int) -> ReportRow | None:
        r = t.report
        row = self.connection.execute(sa.select(r).where(r.c.pk == pk)).first()
        return None if row is None else _report(row)

    def reports(
        self, *, accession: str = "", patient_id: str = "", procedure_pk: int | None = None, status: str = "",
        limit: int = 100, before: int | None = None,
    ) -> list[ReportRow]:  # fmt: skip
        r = t.report
        select = sa.select(r)
        for column, value in ((r.c.accession_number, accession), (r.c.patient_id, patient_id), (r.c.status, status)):
            if value:
                select = select.where(column == value)
        if procedure_pk is not None:
            select = select.where(r.c.procedure_pk == procedure_pk)
        if before is not None:
            select = select.where(r.c.pk < before)
        rows = self.connection.execute(select.order_by(r.c.pk.desc()).limit(max(1, min(limit, 1000))))
        return [_report(row) for row in rows]
