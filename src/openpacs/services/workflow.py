"""The workflow's listener on the change feed (ARCHITECTURE.md section 4): links arriving
studies to their requested procedures and moves the procedures' status.

- A new study is linked to the procedures whose Study Instance UID it has (``order-uid``),
  else to those of its accession number (``accession``); a new series to those its Request
  Attributes Sequence (0040,0275) names (``request-attributes``), so that a modality that
  ignored the worklist's Study Instance UID is still linked. The first image moves a linked
  procedure to in-progress.
- A stable study moves its procedures to completed.
- Images stored in a study whose procedure is final make it amended.

Delivery is at least once; each step is idempotent (a link made twice is one link, a status
is only ever moved forward).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from openpacs.domain import dicom_json as dj
from openpacs.domain.orders import ProcedureRow
from openpacs.domain.records import Actor, ActorType, Change
from openpacs.ports.index import Index, IndexSession
from openpacs.services.procedures import advance, link

log = logging.getLogger(__name__)

CONSUMER = "workflow"
_ACTOR = Actor(ActorType.RULE, "workflow")
_REQUEST_ATTRIBUTES = "00400275"


class WorkflowService:
    """Follows the change feed for the workflow; run under the change-feed lease."""

    def __init__(self, index: Index, *, clock: Callable[[], datetime]) -> None:
        self._index = index
        self._clock = clock
        #: called with (event, study UID, procedures) after each workflow event, in the transaction
        self.on_event: Callable[[IndexSession, str, str, list[ProcedureRow]], None] | None = None

    def consume(self, batch: int = 500) -> int:
        """Apply the new changes; how many were read."""
        now = self._clock()
        with self._index.session(write=True) as session:
            changes = session.changes_since(session.checkpoint(CONSUMER), batch)
            stored: list[Change] = []
            for change in changes:
                if change.change_type == "instance_stored":
                    stored.append(change)
                else:
                    self._apply(session, change, now)
            if stored:
                self._images_added(session, stored, now)
            if changes:
                session.set_checkpoint(CONSUMER, changes[-1].seq, now)
        return len(changes)

    def _apply(self, session: IndexSession, change: Change, now: datetime) -> None:
        kind, uid = change.change_type, change.resource
        if kind == "study_created":
            study = session.study(uid)
            procedures = self._link_new_study(session, uid, dj.text(study.attrs, "00080050") if study else "", now)
            for procedure in procedures:
                advance(session, procedure, "in-progress", "first image", _ACTOR, now)
            self._event(session, "study-received", uid, procedures)
        elif kind == "series_created":
            context = session.series_context(uid)
            if context is None:
                return
            study_uid = context.study.uid
            for item in dj.items(context.series.attrs, _REQUEST_ATTRIBUTES):
                for procedure in session.workflow.procedures_matching(
                    study_instance_uid=dj.text(item, "0020000D").strip(),
                    accession=dj.text(item, "00080050").strip(),
                    requested_procedure_id=dj.text(item, "00401001").strip(),
                ) or session.workflow.procedures_matching(
                    accession=dj.text(item, "00080050").strip(),
                    requested_procedure_id=dj.text(item, "00401001").strip(),
                ):
                    if link(session, study_uid, procedure, "request-attributes", _ACTOR, now):
                        advance(session, procedure, "in-progress", "first image", _ACTOR, now)
        elif kind == "study_stable":
            procedures = session.workflow.procedures_of_study(uid)
            for procedure in procedures:
                advance(session, procedure, "in-progress", "study stable", _ACTOR, now)
                advance(session, procedure, "completed", "study stable", _ACTOR, now)
            self._event(session, "study-stable", uid, procedures)

    def _link_new_study(
        self, session: IndexSession, study_uid: str, accession: str, now: datetime
    ) -> list[ProcedureRow]:
        store = session.workflow
        found = store.procedures_matching(study_instance_uid=study_uid)
        how = "order-uid"
        if not found and accession:
            found, how = store.procedures_matching(accession=accession), "accession"
        for procedure in found:
            link(session, study_uid, procedure, how, _ACTOR, now)
        return store.procedures_of_study(study_uid)

    def _images_added(self, session: IndexSession, changes: list[Change], now: datetime) -> None:
        """Images stored after the final report make the procedure amended (IHE: the report no
        longer covers every image)."""
        if not session.workflow.procedures_with_status(["final"], limit=1):
            return
        studies = session.workflow.studies_of_instances([c.resource for c in changes])
        latest: dict[str, datetime] = {}  # per study, when its newest image of the batch came
        for change in changes:
            study_uid = studies.get(change.resource)
            if study_uid is not None:
                latest[study_uid] = max(change.time, latest.get(study_uid, change.time))
        for study_uid, stored_at in sorted(latest.items()):
            for procedure in session.workflow.procedures_of_study(study_uid):
                if procedure.status == "final" and procedure.status_at < stored_at:
                    advance(session, procedure, "amended", "images added after final", _ACTOR, now)

    def _event(self, session: IndexSession, event: str, study_uid: str, procedures: list[ProcedureRow]) -> None:
        if self.on_event is not None:
            self.on_event(session, event, study_uid, procedures)
