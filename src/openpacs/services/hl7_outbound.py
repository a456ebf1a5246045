"""Notifications to the RIS over HL7 (ARCHITECTURE.md section 4: through the job queue).

Events come from the change feed (a study's first instance: ``study-received``; a study
stable: ``study-complete``) and from the corrections journal (``patient-changes``: an
administrator's patient update, merge or change of identifier; those from HL7 itself are
not echoed back). Each becomes a message of the HL7 message store (direction ``out``,
status ``queued``) for each destination that asked for that event, in one transaction with
the consumer's checkpoint; a ``hl7-send`` job per destination then sends the queued
messages in order over one MLLP connection and checks each ACK (HL7 v2.5.1 2.9: MSA-2
echoes MSH-10; AA, or CA when no application ACK was asked for). A destination that cannot
be reached holds its queue (the job retries with backoff); a message answered AE or AR is
marked ``failed`` with an alert, and the queue goes on.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import NotFound
from openpacs.domain.hl7 import Hl7Error, StoredMessage, header
from openpacs.domain.hl7_outbound import Envelope, OutboundPatient, StatusUpdate, adt_message, status_message
from openpacs.domain.jobs import Job, JobKind
from openpacs.domain.orders import ProcedureRow
from openpacs.domain.qa import Operation, OperationKind
from openpacs.ports.index import Index, IndexSession, PatientRow
from openpacs.ports.peers import Hl7Peer
from openpacs.services.jobs import Outcome, Run, Verdict

log = logging.getLogger(__name__)

EVENTS = ("study-received", "study-complete", "patient-changes")
CONSUMER = "hl7-outbound"
OPERATIONS = "hl7-outbound-operations"
QUEUED, SENT, FAILED = "queued", "sent", "failed"
_STATUS = {"study-received": "IP", "study-complete": "CM"}


@dataclass(frozen=True)
class Hl7Destination:
    """A receiving system (an ``[[hl7.destinations]]`` entry)."""

    name: str
    host: str
    port: int
    events: tuple[str, ...] = ("study-received", "study-complete")
    structure: str = "ORM"  # ORM (ORM^O01, v2.3.1) or OMI (OMI^O23, v2.5.1)
    sending_application: str = "OPENPACS"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    timeout: float = 30.0

    @property
    def queue(self) -> str:
        return f"hl7:{self.name}"


class Hl7OutboundService:
    """Queues and sends the notifications; thread-safe."""

    def __init__(
        self,
        index: Index,
        peer: Hl7Peer,
        clock: Callable[[], datetime],
        destinations: Sequence[Hl7Destination] = (),
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.index = index
        self.peer = peer
        self.clock = clock
        self.destinations = tuple(destinations)
        self.wake = wake
        self._sequence = itertools.count(1)

    def _wanted(self, event: str) -> list[Hl7Destination]:
        return [d for d in self.destinations if event in d.events]

    # -- from events to queued messages -------------------------------------------------------

    def consume(self, batch: int = 500) -> int:
        """Turn new events into queued messages; how many events were read."""
        now = self.clock()
        if not self.destinations:
            self._follow(now)
            return 0
        queued = 0
        with self.index.session(write=True) as session:
            checkpoint = session.checkpoint(CONSUMER)
            changes = session.changes_since(checkpoint, batch)
            for change in changes:
                event = {"study_created": "study-received", "study_stable": "study-complete"}.get(change.change_type)
                if event is None:
                    continue
                for destination in self._wanted(event):
                    queued += self._queue_study(session, destination, event, change.resource, now)
            if changes:
                session.set_checkpoint(CONSUMER, changes[-1].seq, now)
            read = len(changes)
            if self._wanted("patient-changes"):
                operations, last = self._new_operations(session)
                for operation in operations:
                    for destination in self._wanted("patient-changes"):
                        queued += self._queue_patient(session, destination, operation, now)
                if last:
                    session.set_checkpoint(OPERATIONS, last, now)
                read += len(operations)
        if queued:
            self.wake()
        return read

    def _follow(self, now: datetime) -> None:
        """With no destination, the checkpoints follow the feed: a destination configured later
        is told of what happens from then on, not of the archive's past."""
        with self.index.session() as session:
            last = session.last_change_seq()
            behind = session.checkpoint(CONSUMER) < last
            latest = session.operations(1)
            newest = latest[0].id or 0 if latest else 0
            behind_operations = session.checkpoint(OPERATIONS) < newest
        if behind or behind_operations:
            with self.index.session(write=True) as session:
                session.set_checkpoint(CONSUMER, last, now)
                session.set_checkpoint(OPERATIONS, newest, now)

    def _new_operations(self, session: IndexSession) -> tuple[list[Operation], int]:
        """Operations after the checkpoint, oldest first, and the newest one's id."""
        checkpoint = session.checkpoint(OPERATIONS)
        found: list[Operation] = []
        before: int | None = None
        while True:
            page = session.operations(200, before)
            fresh = [o for o in page if o.id is not None and o.id > checkpoint]
            found += fresh
            if len(fresh) < len(page) or len(page) < 200:
                break
            before = page[-1].id
        found.sort(key=lambda o: o.id or 0)
        return found, max((o.id or 0 for o in found), default=0)

    def _envelope(self, destination: Hl7Destination, now: datetime) -> Envelope:
        return Envelope(
            control_id=f"OP{now.strftime('%Y%m%d%H%M%S%f')}{next(self._sequence) % 1000:03d}",
            now=now,
            sending_application=destination.sending_application,
            sending_facility=destination.sending_facility,
            receiving_application=destination.receiving_application,
            receiving_facility=destination.receiving_facility,
        )

    @staticmethod
    def _patient(row: PatientRow) -> OutboundPatient:
        attrs = row.attrs
        return OutboundPatient(
            patient_id=dj.text(attrs, "00100020"),
            issuer=dj.text(attrs, "00100021"),
            name=dj.text(attrs, "00100010"),
            birth_date=dj.text(attrs, "00100030"),
            sex=dj.text(attrs, "00100040"),
        )

    def _queue_study(
        self, session: IndexSession, destination: Hl7Destination, event: str, study_uid: str, now: datetime
    ) -> int:
        study = session.study(study_uid)
        if study is None:
            return 0  # deleted since
        patient = self._patient(session.patient(study.patient_pk))
        accession = dj.text(study.attrs, "00080050")
        modality = (study.modalities or "").split("\\")[0]
        procedures = session.orders.procedures_for(accession, "", None) if accession else []
        procedures = [p for p in procedures if p.study_instance_uid in (study_uid, "")] or procedures
        updates = []
        choices: list[ProcedureRow | None] = list(procedures) or [None]
        for procedure in choices:
            order = session.orders.order(procedure.order_pk) if procedure is not None else None
            steps = [s for s in (procedure.steps if procedure else []) if s.status != "DISCONTINUED"]
            updates.append(
                StatusUpdate(
                    order_status=_STATUS[event],
                    placer_order_number=order.placer_order_number if order else "",
                    filler_order_number=order.filler_order_number if order else "",
                    accession_number=accession,
                    requested_procedure_id=procedure.requested_procedure_id if procedure else "",
                    scheduled_step_id=steps[0].scheduled_step_id if steps else "",
                    study_instance_uid=study_uid,
                    modality=modality,
                    procedure_code=procedure.code if procedure else None,
                )
            )
        for update in updates:
            raw = status_message(destination.structure, self._envelope(destination, now), patient, update)
            self._queue(session, destination, raw, now)
        return len(updates)

    def queue_status(
        self, session: IndexSession, destination_name: str, order_status: str, study_uid: str, now: datetime
    ) -> int:
        """Queue an order status update (ORC-5 IP or CM) about a study to one destination, in
        the caller's transaction (a workflow rule's ``hl7-notify``); how many were queued."""
        destination = next((d for d in self.destinations if d.name == destination_name), None)
        if destination is None:
            raise NotFound(f"no HL7 destination named {destination_name!r} (hl7.destinations)")
        event = "study-received" if order_status == "IP" else "study-complete"
        queued = self._queue_study(session, destination, event, study_uid, now)
        if queued:
            self.wake()
        return queued

    def _queue_patient(
        self, session: IndexSession, destination: Hl7Destination, operation: Operation, now: datetime
    ) -> int:
        if operation.source != "local" or operation.undo_of is not None:
            return 0  # HL7's own changes are not echoed back to the ADT source
        if operation.kind is OperationKind.UPDATE_PATIENT:
            values = operation.params.get("set", {})
            previous = _patient_id_of(str(operation.params.get("patient", "")))
            current = values.get("PatientID") or previous
            row = _live_patient(session, current)
            if row is None:
                return 0
            trigger = "A47" if "PatientID" in values and current != previous else "A08"
            raw = adt_message(trigger, self._envelope(destination, now), self._patient(row), previous)
        elif operation.kind is OperationKind.MERGE_PATIENTS:
            target = _live_patient(session, _patient_id_of(str(operation.params.get("target", ""))))
            if target is None:
                return 0
            source = _patient_id_of(str(operation.params.get("source", "")))
            raw = adt_message("A40", self._envelope(destination, now), self._patient(target), source)
        else:
            return 0
        self._queue(session, destination, raw, now)
        return 1

    def _queue(self, session: IndexSession, destination: Hl7Destination, raw: bytes, now: datetime) -> None:
        summary = header(raw)
        session.hl7.add_message(StoredMessage("out", now, QUEUED, raw, summary, peer=destination.name))
        key = f"hl7-send|{destination.name}"
        if not session.jobs.waiting(key):
            job = Job(kind=JobKind.HL7_SEND, queue=destination.queue, params={"destination": destination.name})
            session.jobs.add(job, 1, now, dedupe_key=key)

    # -- sending ---------------------------------------------------------------------------------

    def execute(self, run: Run) -> Outcome:
        """The ``hl7-send`` executor: the destination's queued messages, oldest first."""
        name = str(run.job.params.get("destination", ""))
        destination = next((d for d in self.destinations if d.name == name), None)
        if destination is None:
            return Outcome(Verdict.FAILED, f"HL7 destination {name!r} is no longer configured (hl7.destinations)")
        sent = 0
        try:
            connection = self.peer.connect(destination.host, destination.port, timeout=destination.timeout)
        except OSError as exc:
            return Outcome(Verdict.RETRY, f"{destination.host}:{destination.port}: {exc}")
        try:
            while True:
                with self.index.session() as session:
                    batch = session.hl7.outbox(destination.name, 100)
                if not batch:
                    break
                for message in batch:
                    assert message.pk is not None
                    try:
                        result = connection.send(message.raw)
                    except (OSError, Hl7Error) as exc:
                        return Outcome(Verdict.RETRY, f"{destination.host}:{destination.port}: {exc}", sent > 0)
                    now = self.clock()
                    with self.index.session(write=True) as session:
                        session.hl7.set_ack(message.pk, result.code[:2])
                        if result.ok:
                            session.hl7.set_status(message.pk, SENT, result.text, now)
                        else:
                            session.hl7.set_status(message.pk, FAILED, result.text or result.code, now)
                            session.jobs.add_alert(
                                "hl7-send-failed",
                                f"HL7 message {message.pk} to {destination.name} answered {result.code or '?'}:"
                                f" {result.text}",
                                {"message": message.pk, "destination": destination.name},
                                now,
                            )
                    sent += 1
                    run.progress["sent"] = sent
                    if not run.beat():
                        return Outcome(Verdict.RETRY, "stopped", sent > 0)
        finally:
            connection.close()
        return Outcome(Verdict.DONE, progressed=sent > 0)


def _patient_id_of(ref: str) -> str:
    """The Patient ID of a PatientRef as written ("ID" or "ID (issuer X)")."""
    return ref.split(" (issuer ", 1)[0].strip()


def _live_patient(session: IndexSession, patient_id: str) -> PatientRow | None:
    rows = [r for r in session.patients_with_identifier(patient_id) if r.merged_into_pk is None]
    return rows[0] if len(rows) == 1 else None
