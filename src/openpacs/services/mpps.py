"""Modality Performed Procedure Step SCP (PS3.4 F.7; IHE RAD TF-2 4.6 and 4.7).

A modality creates the step (N-CREATE, status IN PROGRESS only), updates it while it is in
progress (N-SET), and ends it with COMPLETED or DISCONTINUED; a final step refuses further
N-SETs (0x0110). The step is linked to the worklist entries its Scheduled Step Attributes
Sequence (0040,0270) names (by Scheduled Procedure Step ID, else Study Instance UID, else
accession number and Requested Procedure ID) and to their studies; an MPPS with an empty
sequence is an unscheduled acquisition and is kept without a link. IN PROGRESS moves the
procedure to in-progress and its step to STARTED; COMPLETED to completed and COMPLETED;
DISCONTINUED discontinues the step and leaves the procedure's status alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from pydicom.uid import generate_uid

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import NormalizedError
from openpacs.domain.orders import COMPLETED as STEP_COMPLETED
from openpacs.domain.orders import DISCONTINUED as STEP_DISCONTINUED
from openpacs.domain.orders import STARTED, ProcedureRow, StepRow
from openpacs.domain.records import Actor
from openpacs.domain.workflow import COMPLETED, DISCONTINUED, IN_PROGRESS, MPPS_STATUSES, MppsRow
from openpacs.ports.index import AuditRecord, Index, IndexSession
from openpacs.services.orders import with_step_status
from openpacs.services.procedures import advance, link

_STATUS = "00400252"
_SSA_SEQUENCE = "00400270"
_STUDY_UID = "0020000D"
_SPS_ID = "00400009"
_ACCESSION = "00080050"
_RP_ID = "00401001"
_PATIENT_ID = "00100020"
#: Attributes an N-SET may not change (PS3.4 F.7.2.2.1: Table F.7.2-1 "Not allowed")
_FIXED = frozenset({_SSA_SEQUENCE, _PATIENT_ID, "00100010", "00400244", "00400245", "00080060"})


class Forwarder(Protocol):
    """Queues copies of MPPS operations to other nodes (within the caller's transaction)."""

    def __call__(
        self, session: IndexSession, operation: str, sop_instance_uid: str, attrs: dict[str, Any], now: datetime
    ) -> None: ...


class MppsService:
    """Takes N-CREATE and N-SET of performed procedure steps; thread-safe."""

    def __init__(self, index: Index, *, clock: Callable[[], datetime], forward: Forwarder | None = None) -> None:
        self._index = index
        self._clock = clock
        self.forward = forward

    def create(self, sop_instance_uid: str, attrs: dict[str, Any], station_ae_title: str) -> str:
        """N-CREATE: the SOP Instance UID of the new step (generated when the SCU gave none)."""
        status = dj.text(attrs, _STATUS).strip().upper()
        if not status:
            raise NormalizedError(0x0120, "Performed Procedure Step Status (0040,0252) is missing")
        if status != IN_PROGRESS:
            raise NormalizedError(0x0106, f"an MPPS is created IN PROGRESS, not {status!r}")
        uid = sop_instance_uid.strip() or str(generate_uid())
        now = self._clock()
        actor = Actor.dicom(station_ae_title, "")
        with self._index.session(write=True) as session:
            row = MppsRow(uid, status, station_ae_title, dj.text(attrs, _PATIENT_ID), (), attrs, now, now)
            procedures, steps = self._scheduled(session, attrs)
            row.study_instance_uids = tuple(_study_uids(attrs, procedures))
            if not session.workflow.save_mpps(row, new=True):
                raise NormalizedError(0x0111, f"an MPPS {uid} exists already")
            self._apply(session, row, procedures, steps, actor, now)
            self._audit(session, actor, "mpps-created", row, now)
            if self.forward is not None:
                self.forward(session, "create", uid, attrs, now)
        return uid

    def set(self, sop_instance_uid: str, changes: dict[str, Any], station_ae_title: str) -> MppsRow:
        """N-SET: the step with *changes* applied (final once COMPLETED or DISCONTINUED)."""
        now = self._clock()
        actor = Actor.dicom(station_ae_title, "")
        with self._index.session(write=True) as session:
            row = session.workflow.mpps(sop_instance_uid)
            if row is None:
                raise NormalizedError(0x0112, f"no MPPS {sop_instance_uid}")
            if row.status != IN_PROGRESS:
                raise NormalizedError(0x0110, f"the MPPS is {row.status}: it can no longer be updated")
            fixed = sorted(k for k in changes if k in _FIXED and not dj.element_equal(changes[k], row.attrs.get(k)))
            if fixed:
                raise NormalizedError(0x0106, f"({fixed[0][:4]},{fixed[0][4:]}) cannot be changed by N-SET")
            status = dj.text(changes, _STATUS).strip().upper() or row.status
            if status not in MPPS_STATUSES:
                raise NormalizedError(0x0106, f"unknown Performed Procedure Step Status {status!r}")
            merged = copy.deepcopy(row.attrs)
            merged.update(copy.deepcopy(changes))
            row.attrs, row.status, row.updated_at = merged, status, now
            procedures, steps = self._scheduled(session, merged)
            row.study_instance_uids = tuple(_study_uids(merged, procedures))
            session.workflow.save_mpps(row, new=False)
            self._apply(session, row, procedures, steps, actor, now)
            self._audit(session, actor, "mpps-updated", row, now)
            if self.forward is not None:
                self.forward(session, "set", sop_instance_uid, changes, now)
        return row

    def get(self, sop_instance_uid: str) -> MppsRow | None:
        with self._index.session() as session:
            return session.workflow.mpps(sop_instance_uid)

    def steps(self, *, status: str = "", study_instance_uid: str = "", limit: int = 100) -> list[MppsRow]:
        with self._index.session() as session:
            return session.workflow.mpps_list(status=status, study_instance_uid=study_instance_uid, limit=limit)

    # -- links and status -----------------------------------------------------------------------

    @staticmethod
    def _scheduled(session: IndexSession, attrs: dict[str, Any]) -> tuple[list[ProcedureRow], list[StepRow]]:
        """The requested procedures and steps the Scheduled Step Attributes Sequence names."""
        procedures: dict[int, ProcedureRow] = {}
        steps: dict[int, StepRow] = {}
        store = session.workflow
        for item in dj.items(attrs, _SSA_SEQUENCE):
            step_id = dj.text(item, _SPS_ID).strip()
            found_steps = store.steps_with_id(step_id) if step_id else []
            study_uid = dj.text(item, _STUDY_UID).strip()
            if study_uid and len(found_steps) > 1:
                found_steps = [s for s in found_steps if _study_of(s) == study_uid] or found_steps
            for step in found_steps:
                steps[step.pk] = step
                procedure = session.orders.procedure(step.procedure_pk)
                if procedure is not None:
                    procedures[procedure.pk] = procedure
            if not found_steps:
                for procedure in store.procedures_matching(
                    study_instance_uid=study_uid,
                    accession=dj.text(item, _ACCESSION).strip(),
                    requested_procedure_id=dj.text(item, _RP_ID).strip(),
                ):
                    procedures[procedure.pk] = procedure
        return list(procedures.values()), list(steps.values())

    @staticmethod
    def _apply(
        session: IndexSession,
        row: MppsRow,
        procedures: Sequence[ProcedureRow],
        steps: Sequence[StepRow],
        actor: Actor,
        now: datetime,
    ) -> None:
        step_status = {IN_PROGRESS: STARTED, COMPLETED: STEP_COMPLETED, DISCONTINUED: STEP_DISCONTINUED}[row.status]
        for step in steps:
            if step.status != step_status:
                session.orders.set_step_status(step.pk, step_status, with_step_status(step.attrs, step_status), now)
        source = f"mpps {row.status.lower()}"
        for procedure in procedures:
            for uid in row.study_instance_uids:
                link(session, uid, procedure, "mpps", actor, now)
            if row.status == IN_PROGRESS:
                advance(session, procedure, "in-progress", source, actor, now)
            elif row.status == COMPLETED:
                advance(session, procedure, "in-progress", source, actor, now)
                advance(session, procedure, "completed", source, actor, now)

    @staticmethod
    def _audit(session: IndexSession, actor: Actor, action: str, row: MppsRow, now: datetime) -> None:
        session.add_audit(
            [
                AuditRecord(
                    now,
                    actor,
                    action,
                    "success",
                    [{"level": "STUDY", "uid": uid} for uid in row.study_instance_uids]
                    or [{"level": "PATIENT", "uid": row.patient_id}],
                    {"mpps": row.sop_instance_uid, "status": row.status},
                )
            ]
        )


def _study_of(step: StepRow) -> str:
    return dj.text(step.attrs, _STUDY_UID)


def _study_uids(attrs: dict[str, Any], procedures: Sequence[ProcedureRow]) -> list[str]:
    """The studies of a step: those its Scheduled Step Attributes name (a modality may also
    ignore the worklist's Study Instance UID: then its own, in the Performed Series)."""
    found = [dj.text(i, _STUDY_UID).strip() for i in dj.items(attrs, _SSA_SEQUENCE)]
    found = [u for u in found if u]
    if not found:
        found = [p.study_instance_uid for p in procedures if p.study_instance_uid]
    return list(dict.fromkeys(found))
