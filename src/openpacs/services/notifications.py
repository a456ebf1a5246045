"""DICOM notifications we send: Instance Availability Notification (PS3.4 Annex R) and MPPS
forwarding (PS3.4 F.7), through the job queue (one queue per node: ``notify:NODE``).

- **Availability**: a change-feed listener. A study that becomes stable is announced with
  every instance ONLINE; instances hidden by a rejection or a soft delete are announced
  UNAVAILABLE (PS3.3 C.4.23, Instance Availability Notification module) to the nodes of
  ``workflow.availability_nodes``. With no such node the checkpoint follows the feed, so a node
  configured later hears of what happens from then on.
- **MPPS forwarding**: each N-CREATE and N-SET the MPPS SCP accepts is queued, in the same
  transaction, for the nodes of ``workflow.mpps_forward_nodes``. An N-SET that reaches a node
  before its N-CREATE (refused 0x0112 there) is tried again later.

An unreachable node holds its queue (retries with backoff); a refusal fails the job and
raises the alert ``notification-refused``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pydicom.uid import generate_uid

from openpacs.domain.errors import PeerError
from openpacs.domain.jobs import Job, JobKind
from openpacs.domain.tags import Level
from openpacs.domain.workflow import MODALITY_PERFORMED_PROCEDURE_STEP
from openpacs.ports.index import Index, IndexSession
from openpacs.ports.peers import NormalizedPeer, PeerAddress
from openpacs.services.jobs import Outcome, Run, Verdict

log = logging.getLogger(__name__)

INSTANCE_AVAILABILITY_NOTIFICATION = "1.2.840.10008.5.1.4.33"
CONSUMER = "availability"
_NO_SUCH_INSTANCE = 0x0112


def availability_dataset(
    study_uid: str, patient: dict[str, Any], instances: Sequence[tuple[str, str, str]], availability: str,
    retrieve_ae_title: str, mpps_uids: Sequence[str] = (),
) -> dict[str, Any]:  # fmt: skip
    """The N-CREATE data set of an Instance Availability Notification (PS3.3 C.4.23):
    *instances* are (Series Instance UID, SOP Class UID, SOP Instance UID)."""
    series: dict[str, list[dict[str, Any]]] = {}
    for series_uid, sop_class, sop_instance in instances:
        item = {
            "00081150": {"vr": "UI", "Value": [sop_class]},
            "00081155": {"vr": "UI", "Value": [sop_instance]},
            "00080056": {"vr": "CS", "Value": [availability]},
        }
        if availability == "ONLINE":
            item["00080054"] = {"vr": "AE", "Value": [retrieve_ae_title]}
        series.setdefault(series_uid, []).append(item)
    return {
        **{k: v for k, v in patient.items() if k in ("00100010", "00100020")},
        "0020000D": {"vr": "UI", "Value": [study_uid]},
        "00081111": {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [MODALITY_PERFORMED_PROCEDURE_STEP]},
                    "00081155": {"vr": "UI", "Value": [uid]},
                }
                for uid in mpps_uids
            ],
        },
        "00081115": {
            "vr": "SQ",
            "Value": [
                {"0020000E": {"vr": "UI", "Value": [uid]}, "00081199": {"vr": "SQ", "Value": items}}
                for uid, items in series.items()
            ],
        },
    }


class NotificationService:
    """Queues and sends IAN and forwarded MPPS; thread-safe."""

    def __init__(
        self,
        index: Index,
        peer: NormalizedPeer,
        *,
        clock: Callable[[], datetime],
        ae_title: str,
        availability_nodes: Sequence[str] = (),
        mpps_nodes: Sequence[str] = (),
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._index = index
        self._peer = peer
        self._clock = clock
        self._ae_title = ae_title
        self.availability_nodes = tuple(availability_nodes)
        self.mpps_nodes = tuple(mpps_nodes)
        self._wake = wake

    # -- queueing -----------------------------------------------------------------------------

    def _queue(self, session: IndexSession, node: str, params: dict[str, Any], now: datetime, study: str = "") -> None:
        job = Job(
            kind=JobKind.NOTIFY, queue=f"notify:{node}", params={"node": node, **params}, study_instance_uid=study
        )
        session.jobs.add(job, 1, now)

    def forward_mpps(
        self, session: IndexSession, operation: str, sop_instance_uid: str, attrs: dict[str, Any], now: datetime
    ) -> None:
        """Queue an accepted MPPS N-CREATE (``create``) or N-SET (``set``) for the forward nodes."""
        for node in self.mpps_nodes:
            params = {
                "operation": "n-create" if operation == "create" else "n-set",
                "sop_class_uid": MODALITY_PERFORMED_PROCEDURE_STEP,
                "sop_instance_uid": sop_instance_uid,
                "dataset": attrs,
            }
            self._queue(session, node, params, now)
        if self.mpps_nodes:
            self._wake()

    def consume(self, batch: int = 500) -> int:
        """Turn new study_stable and instance_hidden changes into notifications; how many read."""
        now = self._clock()
        with self._index.session(write=True) as session:
            changes = session.changes_since(session.checkpoint(CONSUMER), batch)
            if not changes:
                return 0
            queued = 0
            if self.availability_nodes:
                hidden: list[str] = []
                for change in changes:
                    if change.change_type == "study_stable":
                        queued += self._announce_study(session, change.resource, now)
                    elif change.change_type == "instance_hidden":
                        hidden.append(change.resource)
                if hidden:
                    queued += self._announce_unavailable(session, hidden, now)
            session.set_checkpoint(CONSUMER, changes[-1].seq, now)
        if queued:
            self._wake()
        return len(changes)

    def _announce_study(self, session: IndexSession, study_uid: str, now: datetime) -> int:
        instances = session.stored_instances(Level.STUDY, [study_uid])
        if not instances:
            return 0
        mpps = [m.sop_instance_uid for m in session.workflow.mpps_list(study_instance_uid=study_uid, limit=20)]
        dataset = availability_dataset(
            study_uid,
            instances[0].patient_attrs,
            [(i.series_instance_uid, i.sop_class_uid, i.sop_instance_uid) for i in instances],
            "ONLINE",
            self._ae_title,
            mpps,
        )
        for node in self.availability_nodes:
            self._queue(session, node, self._ian(dataset), now, study_uid)
        return len(self.availability_nodes)

    def _announce_unavailable(self, session: IndexSession, sop_instance_uids: list[str], now: datetime) -> int:
        by_study: dict[str, list[tuple[str, str, str]]] = {}
        for uid in dict.fromkeys(sop_instance_uids):
            for state in session.instance_states(Level.IMAGE, uid):
                if state.hidden is not None:
                    by_study.setdefault(state.study_instance_uid, []).append(
                        (state.series_instance_uid, state.sop_class_uid, state.sop_instance_uid)
                    )
        for study_uid, instances in by_study.items():
            dataset = availability_dataset(study_uid, {}, instances, "UNAVAILABLE", self._ae_title)
            for node in self.availability_nodes:
                self._queue(session, node, self._ian(dataset), now, study_uid)
        return len(by_study) * len(self.availability_nodes)

    @staticmethod
    def _ian(dataset: dict[str, Any]) -> dict[str, Any]:
        return {
            "operation": "n-create",
            "sop_class_uid": INSTANCE_AVAILABILITY_NOTIFICATION,
            "sop_instance_uid": str(generate_uid()),
            "dataset": dataset,
        }

    # -- sending ------------------------------------------------------------------------------

    def execute(self, run: Run) -> Outcome:
        """The ``notify`` executor: one N-CREATE or N-SET to one node."""
        params = run.job.params
        name = str(params.get("node", ""))
        with self._index.session() as session:
            node = session.node(name)
        if node is None:
            return Outcome(Verdict.FAILED, f"node {name!r} is no longer configured")
        peer = PeerAddress(node.ae_title, node.host, node.port)
        operation = str(params["operation"])
        send = self._peer.n_create if operation == "n-create" else self._peer.n_set
        try:
            status = send(peer, str(params["sop_class_uid"]), str(params["sop_instance_uid"]), dict(params["dataset"]))
        except PeerError as exc:
            return Outcome(Verdict.RETRY, exc.reason)
        if status == 0 or status & 0xF000 == 0xB000:
            return Outcome(Verdict.DONE, progressed=True)
        if operation == "n-set" and status == _NO_SUCH_INSTANCE:
            return Outcome(Verdict.RETRY, f"{peer} does not know the step yet (0x0112): its N-CREATE may be on the way")
        what = (
            "Instance Availability Notification"
            if params["sop_class_uid"] == INSTANCE_AVAILABILITY_NOTIFICATION
            else "MPPS"
        )
        with self._index.session(write=True) as session:
            session.jobs.add_alert(
                "notification-refused",
                f"{name} refused the {what} {operation.upper()} of {params['sop_instance_uid']}: status 0x{status:04X}",
                {"node": name, "sop_instance_uid": params["sop_instance_uid"]},
                self._clock(),
            )
        return Outcome(Verdict.FAILED, f"{peer} refused the {operation.upper()}: 0x{status:04X}")
