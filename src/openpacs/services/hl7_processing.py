"""Applying stored HL7 messages (HL7 v2.5.1 chapters 3, 4 and 7): the consumer of the message
store.

One consumer (held by the ``hl7`` lease when several nodes run) takes the messages in
status ``received`` in arrival order and applies them through the same services as an
administrator's corrections, with source ``hl7`` (their values then hold against a local
undo; ARCHITECTURE.md section 3):

- ADT A01, A04, A05, A08, A28, A31: create the patient, or update its demographics;
- ADT A40 and A34: merge the patient named in MRG-1 into the one in PID-3;
- ADT A47: change the patient's identifier (MRG-1 -> PID-3);
- ADT A10: the patient arrived: its scheduled procedure steps of the day become ARRIVED;
- ORM^O01, OMI^O23: orders, requested procedures, scheduled steps (the worklist);
- ORU^R01: reports, linked to their order, procedure and studies.

A message naming a Patient ID that was merged into another follows ``merged_id_policy``.
Other messages are kept, marked ``skipped`` with the reason. A message that fails is
marked ``failed`` (an alert is raised) and holds back the later messages of the same
sender for the same patient until it is reprocessed or skipped; other patients' messages
go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from openpacs.domain.errors import Conflict, InvalidQuery, NotFound, OpenPacsError
from openpacs.domain.hl7 import Hl7Error, StoredMessage, Summary, find, header, parse
from openpacs.domain.hl7_adt import Hl7Identifier, demographics, patient_identifier
from openpacs.domain.hl7_fields import Segment
from openpacs.domain.hl7_orders import OrderMessageError, orders_of, reports_of
from openpacs.domain.hl7_senders import SenderDirectory, SenderPolicy, peer_address
from openpacs.domain.records import Actor, ActorType, Issuer
from openpacs.domain.records import PatientIdentifier as IndexIdentifier
from openpacs.domain.tags import tag_of
from openpacs.ports.index import AuditRecord, Index
from openpacs.services.orders import OrderService
from openpacs.services.reconcile import PatientRef, ReconcileService, element_from_text
from openpacs.services.report_documents import ReportDocuments

log = logging.getLogger(__name__)

PROCESSED, FAILED, SKIPPED = "processed", "failed", "skipped"
MAX_GIVE_WAY = 0.25  # seconds: under a steady flow, at least 4 messages a second are applied
UPDATES = frozenset({"A01", "A04", "A05", "A08", "A28", "A31"})
MERGES = frozenset({"A40", "A34"})
CHANGE_ID = frozenset({"A47"})
ARRIVED = frozenset({"A10"})
ORDER_MESSAGES = frozenset({("ORM", "O01"), ("OMI", "O23")})
RESULT_MESSAGES = frozenset({("ORU", "R01")})


@dataclass(frozen=True)
class Outcome:
    """What applying a message did: its new status, a note or the error, and the field at fault."""

    status: str
    note: str
    location: str = ""  # ERR-2 (segment^sequence^field...), when a field is at fault


class Hl7Processor:
    """Applies received messages; one consumer at a time (the caller holds the lease)."""

    def __init__(
        self,
        index: Index,
        reconcile: ReconcileService,
        orders: OrderService,
        *,
        clock: Callable[[], datetime],
        default_issuer: str,
        authorities: dict[str, str],
        default_charset: str = "",
        senders: SenderDirectory | None = None,
        merged_id_policy: str = "follow",
    ) -> None:
        self._index = index
        self._reconcile = reconcile
        self._orders = orders
        self._clock = clock
        self._default_issuer = default_issuer
        self._authorities = authorities
        self._default_charset = default_charset
        self._senders = senders or SenderDirectory()
        self._merged_id_policy = merged_id_policy
        self.on_processed: Callable[[int, Outcome], None] | None = None  # wakes an after-process ACK
        self.busy: Callable[[], bool] = lambda: False  # messages are arriving: give way to the receiver
        self.documents: ReportDocuments | None = None  # reports stored as DICOM (hl7.reports_as_dicom)

    def _give_way(self) -> None:
        """While messages arrive back to back, wait for a pause in the flow, at most
        MAX_GIVE_WAY seconds: receiving and acknowledging come first, applying catches up."""
        deadline = time.monotonic() + MAX_GIVE_WAY
        while self.busy() and time.monotonic() < deadline:
            time.sleep(0.002)

    def process_pending(self, limit: int = 200) -> int:
        """Apply up to *limit* waiting messages, in arrival order; how many were applied."""
        with self._index.session() as session:
            waiting = session.hl7.pending(limit)
            held = session.hl7.held_patients()
        done = 0
        for message in waiting:
            summary = message.summary
            key = (summary.sender, summary.patient_id) if summary is not None else ("", "")
            if key[1] and key in held:
                continue  # an earlier message for this patient failed: it waits for it
            self._give_way()
            outcome = self.apply(message)
            now = self._clock()
            assert message.pk is not None
            with self._index.session(write=True) as session:
                session.hl7.set_status(message.pk, outcome.status, outcome.note, now)
                if outcome.status == FAILED:
                    session.jobs.add_alert(
                        "hl7-failed",
                        f"HL7 message {message.pk} ({summary.message_type}^{summary.trigger} {summary.control_id}"
                        f" from {summary.sender}) failed: {outcome.note}"
                        if summary is not None
                        else f"HL7 message {message.pk} failed: {outcome.note}",
                        {"message": message.pk, "patient_id": key[1]},
                        now,
                    )
            if outcome.status == FAILED and key[1]:
                held.add(key)
            if self.on_processed is not None:
                self.on_processed(message.pk, outcome)
            done += 1
        return done

    def policy_of(self, summary: Summary, peer: str) -> SenderPolicy:
        return self._senders.find(summary.sending_application, summary.sending_facility, peer_address(peer)) or (
            SenderPolicy()
        )

    def apply(self, stored: StoredMessage) -> Outcome:
        """What applying one message does (its status, note or error, field at fault)."""
        try:
            first = header(stored.raw, default_charset=self._default_charset)
            policy = self.policy_of(first, stored.peer)
            charset = policy.charset or self._default_charset
            message, summary = parse(stored.raw, default_charset=charset)
        except Hl7Error as exc:
            return Outcome(FAILED, exc.reason)
        context = _Context(
            policy,
            policy.default_issuer if policy.default_issuer is not None else self._default_issuer,
            {**self._authorities, **policy.authorities},
            charset,
        )
        kind = (summary.message_type, summary.trigger)
        handler: Callable[[list[Segment], Summary, StoredMessage, _Context], str] | None = None
        if summary.message_type == "ADT":
            if summary.trigger in UPDATES:
                handler = self._update
            elif summary.trigger in MERGES:
                handler = self._merge
            elif summary.trigger in CHANGE_ID:
                handler = self._change_identifier
            elif summary.trigger in ARRIVED:
                handler = self._arrived
        elif kind in ORDER_MESSAGES:
            handler = self._order
        elif kind in RESULT_MESSAGES:
            handler = self._result
        if handler is None:
            return Outcome(SKIPPED, f"{summary.message_type}^{summary.trigger} is not applied by this version")
        try:
            return Outcome(PROCESSED, handler(message, summary, stored, context))
        except OrderMessageError as exc:
            return Outcome(FAILED, exc.reason, exc.location)
        except _FieldError as exc:
            return Outcome(FAILED, exc.reason, exc.location)
        except OpenPacsError as exc:
            return Outcome(FAILED, exc.reason)
        except Exception as exc:
            log.exception("HL7 message %s failed", stored.pk)
            return Outcome(FAILED, f"{type(exc).__name__}: {exc}")

    # -- orders and results ---------------------------------------------------------------------

    def _order(self, message: list[Segment], summary: Summary, stored: StoredMessage, context: _Context) -> str:
        found = message
        entries = orders_of(
            found, default_issuer=context.issuer, authorities=context.authorities, overrides=context.policy.mapping
        )
        for entry in entries:
            ref = self._follow(PatientRef(entry.patient.patient_id, entry.patient.issuer))
            entry.patient.patient_id, entry.patient.issuer = ref.patient_id, ref.issuer or ""
        actor, _ = self._actor(summary)
        return self._orders.apply_orders(entries, actor, _source(summary), stored.pk)

    def _result(self, message: list[Segment], summary: Summary, stored: StoredMessage, context: _Context) -> str:
        found = message
        entries = reports_of(found, default_issuer=context.issuer, authorities=context.authorities)
        actor, _ = self._actor(summary)
        rows = self._orders.add_reports(entries, actor, _source(summary), stored.pk)
        notes = []
        for r in rows:
            note = f"report {r.pk} ({r.entry.status}" + (
                f", procedure {r.procedure_pk})" if r.procedure_pk else ", no order)"
            )
            if self.documents is not None:
                note += f": {self.documents.store(r)}"
            notes.append(note)
        return "; ".join(notes)

    def _arrived(self, message: list[Segment], summary: Summary, stored: StoredMessage, context: _Context) -> str:
        pid = self._segment(message, "PID")
        identifier = self._identifier(pid, 3, context)
        ref = self._follow(PatientRef(identifier.value, identifier.issuer))
        pv1 = find(message, "PV1")
        when = pv1.get(44, 1) if pv1 is not None else ""
        date = when[:8] if len(when) >= 8 and when[:8].isdigit() else self._clock().astimezone().strftime("%Y%m%d")
        actor, _ = self._actor(summary)
        return self._orders.patient_arrived(ref.patient_id, ref.issuer or "", date, actor, _source(summary))

    def _follow(self, ref: PatientRef) -> PatientRef:
        """The patient a message's ID names, after the merged-ID policy."""
        surviving = self._reconcile.surviving(ref)
        if surviving is None:
            return ref
        if self._merged_id_policy == "reject":
            raise _FieldError(
                f"Patient ID {ref} was merged into {surviving} (hl7.merged_id_policy = reject)", "PID^1^3"
            )
        return surviving

    # -- ADT ----------------------------------------------------------------------------------

    def _identifier(self, segment: Segment, field: int, context: _Context) -> Hl7Identifier:
        found = patient_identifier(
            segment.repetitions(field), default_issuer=context.issuer, authorities=context.authorities,
            component=segment.encoding.component,
        )  # fmt: skip
        if found is None:
            raise _FieldError(f"{segment.name}-{field} carries no identifier", f"{segment.name}^1^{field}")
        return found

    def _segment(self, message: list[Segment], name: str) -> Segment:
        found = find(message, name)
        if found is None:
            raise _FieldError(f"the message has no {name} segment", name)
        return found

    def _actor(self, summary: Summary) -> tuple[Actor, str]:
        """The audit's actor, and the reason recorded for the operation: "HL7 " + the source."""
        return Actor(ActorType.HL7, summary.sender), f"HL7 {_source(summary)}"

    def _update(self, message: list[Segment], summary: Summary, stored: StoredMessage, context: _Context) -> str:
        pid = self._segment(message, "PID")
        identifier = self._identifier(pid, 3, context)
        values = demographics(pid, pid.encoding.component)
        actor, reason = self._actor(summary)
        ref = self._follow(PatientRef(identifier.value, identifier.issuer))
        try:
            operation = self._reconcile.update_patient(ref, values, actor, reason, provenance="hl7")
        except NotFound:
            return self._register(identifier, values, actor, reason)
        except InvalidQuery as exc:
            if "nothing to change" in exc.reason:
                return "no change"
            raise
        return f"operation {operation.id}"

    def _register(self, identifier: Hl7Identifier, values: dict[str, str], actor: Actor, reason: str) -> str:
        """A patient the archive does not know yet: registered, so that its images find it."""
        attrs = {
            "00100020": element_from_text("PatientID", identifier.value),
            **{f"{tag_of(k):08X}": element_from_text(k, v) for k, v in values.items() if v},
        }
        if identifier.issuer:
            attrs["00100021"] = element_from_text("IssuerOfPatientID", identifier.issuer)
        now = self._clock()
        with self._index.session(write=True) as session:
            pk = session.create_patient(attrs, now)
            session.add_identifier(pk, IndexIdentifier(identifier.value, Issuer(identifier.issuer)), now)
            session.add_audit(
                [
                    AuditRecord(
                        now, actor, "hl7-register", "success", [{"level": "PATIENT", "uid": identifier.value}],
                        {"reason": reason, "values": values, "issuer": identifier.issuer},
                    )
                ]
            )  # fmt: skip
        return f"patient {identifier.value} registered"

    def _merge(self, message: list[Segment], summary: Summary, stored: StoredMessage, context: _Context) -> str:
        pid = self._segment(message, "PID")
        mrg = self._segment(message, "MRG")
        target = self._identifier(pid, 3, context)
        source = self._identifier(mrg, 1, context)
        actor, reason = self._actor(summary)
        target_ref = self._follow(PatientRef(target.value, target.issuer))
        source_ref = PatientRef(source.value, source.issuer)
        surviving = self._reconcile.surviving(source_ref)
        if surviving is not None and surviving == target_ref:
            return f"patient {source_ref} is already merged into {target_ref}"
        operation = self._reconcile.merge_patients(source_ref, target_ref, actor, reason, provenance="hl7")
        return f"operation {operation.id}"

    def _change_identifier(
        self, message: list[Segment], summary: Summary, stored: StoredMessage, context: _Context
    ) -> str:
        pid = self._segment(message, "PID")
        mrg = self._segment(message, "MRG")
        new = self._identifier(pid, 3, context)
        old = self._identifier(mrg, 1, context)
        actor, reason = self._actor(summary)
        values = {"PatientID": new.value}
        if new.issuer != old.issuer:
            values["IssuerOfPatientID"] = new.issuer
        try:
            operation = self._reconcile.update_patient(
                self._follow(PatientRef(old.value, old.issuer)), values, actor, reason, provenance="hl7"
            )
        except Conflict as exc:
            raise Conflict(f"{exc.reason} (ADT^A47 cannot give a patient another's identifier)") from exc
        return f"operation {operation.id}"


@dataclass(frozen=True)
class _Context:
    """How the message's sender is read: its policy, identity domain and character set."""

    policy: SenderPolicy
    issuer: str
    authorities: dict[str, str]
    charset: str


class _FieldError(Exception):
    def __init__(self, reason: str, location: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.location = location


def _source(summary: Summary) -> str:
    """What a status change records as its source: the message, e.g. "ORM^O01 1234"."""
    return f"{summary.message_type}^{summary.trigger} {summary.control_id}"[:64]
