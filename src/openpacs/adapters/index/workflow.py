"""Index statements of the radiology workflow (issue 7): performed procedure steps (``mpps``),
storage commitment requests we answer (``commitment_request``), and the links between
studies and requested procedures (``study_procedure``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openpacs.adapters.index import tables as t
from openpacs.adapters.index.fast import aware
from openpacs.adapters.index.orders import _procedure, _step
from openpacs.domain.orders import ProcedureRow, StepRow
from openpacs.domain.workflow import CommitmentFact, CommitmentRequest, MppsRow, StudyLink, Transition


def _mpps(row: Any) -> MppsRow:
    return MppsRow(
        sop_instance_uid=row.sop_instance_uid,
        status=row.status,
        station_ae_title=row.station_ae_title,
        patient_id=row.patient_id,
        study_instance_uids=tuple(row.study_instance_uids),
        attrs=dict(row.attrs),
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
    )


def _request(row: Any) -> CommitmentRequest:
    return CommitmentRequest(
        transaction_uid=row.transaction_uid,
        calling_ae_title=row.calling_ae_title,
        address=row.address,
        state=row.state,
        instances=[(str(c), str(u)) for c, u in row.instances],
        failed=[(str(c), str(u), int(r)) for c, u, r in row.failed],
        received_at=aware(row.received_at),
        reported_at=None if row.reported_at is None else aware(row.reported_at),
        error=row.error,
    )


class WorkflowTable:
    """The WorkflowStore port over one connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- MPPS ---------------------------------------------------------------------------------

    def mpps(self, uid: str) -> MppsRow | None:
        row = self.connection.execute(sa.select(t.mpps).where(t.mpps.c.sop_instance_uid == uid)).first()
        return None if row is None else _mpps(row)

    def mpps_list(self, *, status: str = "", study_instance_uid: str = "", limit: int = 100) -> list[MppsRow]:
        m = t.mpps
        select = sa.select(m)
        if status:
            select = select.where(m.c.status == status)
        rows = [_mpps(r) for r in self.connection.execute(select.order_by(m.c.updated_at.desc()).limit(limit * 4))]
        if study_instance_uid:
            rows = [r for r in rows if study_instance_uid in r.study_instance_uids]
        return rows[:limit]

    def save_mpps(self, row: MppsRow, *, new: bool) -> bool:
        """Insert (*new*: False when the SOP Instance UID exists already) or update."""
        m = t.mpps
        values = {
            "status": row.status,
            "station_ae_title": row.station_ae_title[:64],
            "patient_id": row.patient_id[:64],
            "study_instance_uids": list(row.study_instance_uids),
            "attrs": row.attrs,
            "updated_at": row.updated_at,
        }
        if new:
            exists = self.connection.execute(
                sa.select(m.c.sop_instance_uid).where(m.c.sop_instance_uid == row.sop_instance_uid)
            ).first()
            if exists is not None:
                return False
            self.connection.execute(
                sa.insert(m).values(sop_instance_uid=row.sop_instance_uid, created_at=row.created_at, **values)
            )
            return True
        self.connection.execute(sa.update(m).where(m.c.sop_instance_uid == row.sop_instance_uid).values(values))
        return True

    # -- storage commitment requests (we are the SCP) ------------------------------------------

    def commitment_request(self, transaction_uid: str) -> CommitmentRequest | None:
        c = t.commitment_request
        row = self.connection.execute(sa.select(c).where(c.c.transaction_uid == transaction_uid)).first()
        return None if row is None else _request(row)

    def add_commitment_request(self, request: CommitmentRequest) -> bool:
        """Record a request; False when its Transaction UID is in use already."""
        c = t.commitment_request
        if self.commitment_request(request.transaction_uid) is not None:
            return False
        self.connection.execute(
            sa.insert(c).values(
                transaction_uid=request.transaction_uid,
                calling_ae_title=request.calling_ae_title[:64],
                address=request.address[:200],
                state=request.state,
                instances=[list(i) for i in request.instances],
                failed=[list(f) for f in request.failed],
                received_at=request.received_at,
                reported_at=request.reported_at,
                error=request.error,
            )
        )
        return True

    def set_commitment_request_state(
        self, transaction_uid: str, state: str, reported_at: datetime | None, error: str = ""
    ) -> None:
        c = t.commitment_request
        self.connection.execute(
            sa.update(c)
            .where(c.c.transaction_uid == transaction_uid)
            .values(state=state, reported_at=reported_at, error=error[:2000])
        )

    def commitment_requests(self, *, state: str = "", limit: int = 100) -> list[CommitmentRequest]:
        c = t.commitment_request
        select = sa.select(c)
        if state:
            select = select.where(c.c.state == state)
        return [_request(r) for r in self.connection.execute(select.order_by(c.c.received_at.desc()).limit(limit))]

    def commitment_facts(self, sop_instance_uids: Sequence[str]) -> dict[str, CommitmentFact]:
        """What the index knows of each instance a commitment names (absent: never stored)."""
        i, loc = t.instance, t.location
        found: dict[str, CommitmentFact] = {}
        uids = list(dict.fromkeys(sop_instance_uids))
        for start in range(0, len(uids), 500):
            chunk = uids[start : start + 500]
            live = (
                sa.select(sa.func.count())
                .select_from(loc)
                .where(loc.c.instance_pk == i.c.pk, loc.c.checksum != "")
                .scalar_subquery()
            )
            rows = self.connection.execute(
                sa.select(i.c.sop_instance_uid, i.c.sop_class_uid, i.c.rejection, live.label("live")).where(
                    i.c.sop_instance_uid.in_(chunk)
                )
            )
            for row in rows:
                found[row.sop_instance_uid] = CommitmentFact(
                    sop_class_uid=row.sop_class_uid, rejection=row.rejection, locations=int(row.live or 0)
                )
        return found

    def add_committed(
        self, transaction_uid: str, calling_ae_title: str, sop_instance_uids: Sequence[str], now: datetime
    ) -> None:
        """Record the instances we committed to (a promise deletion must respect)."""
        uids = list(dict.fromkeys(sop_instance_uids))
        if uids:
            self.connection.execute(
                sa.insert(t.committed_instance),
                [
                    {"sop_instance_uid": u, "transaction_uid": transaction_uid, "calling_ae_title": calling_ae_title,
                     "committed_at": now}
                    for u in uids
                ],
            )  # fmt: skip

    def committed_to(self, sop_instance_uids: Sequence[str]) -> dict[str, list[str]]:
        """For each instance we committed to, the AE titles we committed to."""
        c = t.committed_instance
        found: dict[str, list[str]] = {}
        uids = list(dict.fromkeys(sop_instance_uids))
        for start in range(0, len(uids), 500):
            rows = self.connection.execute(
                sa.select(c.c.sop_instance_uid, c.c.calling_ae_title).where(
                    c.c.sop_instance_uid.in_(uids[start : start + 500])
                )
            )
            for row in rows:
                found.setdefault(row.sop_instance_uid, []).append(row.calling_ae_title)
        return found

    # -- studies and requested procedures -------------------------------------------------------

    def link_study(self, study_instance_uid: str, procedure_pk: int, linked_by: str, now: datetime) -> bool:
        """Link a study to a requested procedure (False when linked already)."""
        sp = t.study_procedure
        exists = self.connection.execute(
            sa.select(sp.c.procedure_pk).where(
                sp.c.study_instance_uid == study_instance_uid, sp.c.procedure_pk == procedure_pk
            )
        ).first()
        if exists is not None:
            return False
        self.connection.execute(
            sa.insert(sp).values(
                study_instance_uid=study_instance_uid, procedure_pk=procedure_pk, linked_by=linked_by, linked_at=now
            )
        )
        return True

    def unlink_study(self, study_instance_uid: str, procedure_pk: int) -> bool:
        sp = t.study_procedure
        done = self.connection.execute(
            sa.delete(sp).where(sp.c.study_instance_uid == study_instance_uid, sp.c.procedure_pk == procedure_pk)
        )
        return bool(done.rowcount)

    def links_of_study(self, study_instance_uid: str) -> list[StudyLink]:
        sp = t.study_procedure
        rows = self.connection.execute(sa.select(sp).where(sp.c.study_instance_uid == study_instance_uid))
        return [StudyLink(r.study_instance_uid, int(r.procedure_pk), r.linked_by, aware(r.linked_at)) for r in rows]

    def links_of_procedure(self, procedure_pk: int) -> list[StudyLink]:
        sp = t.study_procedure
        rows = self.connection.execute(sa.select(sp).where(sp.c.procedure_pk == procedure_pk))
        return [StudyLink(r.study_instance_uid, int(r.procedure_pk), r.linked_by, aware(r.linked_at)) for r in rows]

    def procedures_of_study(self, study_instance_uid: str) -> list[ProcedureRow]:
        p, sp = t.requested_procedure, t.study_procedure
        rows = self.connection.execute(
            sa.select(p)
            .join(sp, sp.c.procedure_pk == p.c.pk)
            .where(sp.c.study_instance_uid == study_instance_uid)
            .order_by(p.c.pk)
        )
        return [_procedure(r) for r in rows]

    def procedures_matching(
        self, *, study_instance_uid: str = "", accession: str = "", requested_procedure_id: str = ""
    ) -> list[ProcedureRow]:
        """Procedures whose Study Instance UID, or accession number (and procedure ID), match."""
        p = t.requested_procedure
        if study_instance_uid:
            select = sa.select(p).where(p.c.study_instance_uid == study_instance_uid)
        elif accession:
            select = sa.select(p).where(p.c.accession_number == accession)
            if requested_procedure_id:
                select = select.where(p.c.requested_procedure_id == requested_procedure_id)
        else:
            return []
        return [_procedure(r) for r in self.connection.execute(select.order_by(p.c.pk))]

    def steps_with_id(self, scheduled_step_id: str) -> list[StepRow]:
        s, p = t.scheduled_step, t.requested_procedure
        rows = self.connection.execute(
            sa.select(s, p.c.order_pk)
            .join(p, p.c.pk == s.c.procedure_pk)
            .where(s.c.scheduled_step_id == scheduled_step_id)
            .order_by(s.c.pk)
        )
        return [_step(r, int(r.order_pk)) for r in rows]

    def steps_of_procedure(self, procedure_pk: int) -> list[StepRow]:
        s, p = t.scheduled_step, t.requested_procedure
        rows = self.connection.execute(
            sa.select(s, p.c.order_pk).join(p, p.c.pk == s.c.procedure_pk).where(s.c.procedure_pk == procedure_pk)
        )
        return [_step(r, int(r.order_pk)) for r in rows]

    def studies_of_instances(self, sop_instance_uids: Sequence[str]) -> dict[str, str]:
        """The Study Instance UID of each instance (those no longer stored are left out)."""
        i, se, st = t.instance, t.series, t.study
        found: dict[str, str] = {}
        uids = list(dict.fromkeys(sop_instance_uids))
        for start in range(0, len(uids), 500):
            rows = self.connection.execute(
                sa.select(i.c.sop_instance_uid, st.c.study_instance_uid)
                .select_from(i.join(se, se.c.pk == i.c.series_pk).join(st, st.c.pk == se.c.study_pk))
                .where(i.c.sop_instance_uid.in_(uids[start : start + 500]))
            )
            found.update({str(r.sop_instance_uid): str(r.study_instance_uid) for r in rows})
        return found

    def procedures_with_status(
        self, statuses: Sequence[str], *, before: datetime | None = None, limit: int = 100
    ) -> list[ProcedureRow]:
        """Procedures in one of *statuses* (since before *before*, if given), oldest first."""
        p = t.requested_procedure
        select = sa.select(p).where(p.c.status.in_(list(statuses)))
        if before is not None:
            select = select.where(p.c.status_at < before)
        return [_procedure(r) for r in self.connection.execute(select.order_by(p.c.status_at).limit(limit))]

    # -- status transitions (the workflow rules' events) ----------------------------------------

    def transitions_since(self, after_pk: int, limit: int) -> list[Transition]:
        """Procedure status transitions after history row *after_pk*, oldest first."""
        h = t.procedure_status
        rows = self.connection.execute(sa.select(h).where(h.c.pk > after_pk).order_by(h.c.pk).limit(limit))
        return [Transition(int(r.pk), int(r.procedure_pk), r.status, aware(r.at), r.source) for r in rows]

    def transitions_between(self, since: datetime, until: datetime, limit: int) -> list[Transition]:
        h = t.procedure_status
        rows = self.connection.execute(
            sa.select(h).where(h.c.at >= since, h.c.at <= until).order_by(h.c.pk).limit(limit)
        )
        return [Transition(int(r.pk), int(r.procedure_pk), r.status, aware(r.at), r.source) for r in rows]

    def last_transition_pk(self) -> int:
        h = t.procedure_status
        return int(self.connection.execute(sa.select(sa.func.max(h.c.pk))).scalar() or 0)

    # -- reading worklist assignments -----------------------------------------------------------

    def assign(self, study_instance_uid: str, worklist: str, assigned_by: str, now: datetime) -> bool:
        a = t.reading_assignment
        exists = self.connection.execute(
            sa.select(a.c.worklist).where(a.c.study_instance_uid == study_instance_uid, a.c.worklist == worklist)
        ).first()
        if exists is not None:
            return False
        self.connection.execute(
            sa.insert(a).values(
                study_instance_uid=study_instance_uid, worklist=worklist[:64], assigned_by=assigned_by[:64],
                assigned_at=now,
            )
        )  # fmt: skip
        return True

    def assignments(self, study_instance_uid: str) -> list[str]:
        a = t.reading_assignment
        rows = self.connection.execute(
            sa.select(a.c.worklist).where(a.c.study_instance_uid == study_instance_uid).order_by(a.c.worklist)
        )
        return [str(r[0]) for r in rows]
